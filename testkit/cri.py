"""Pulls the way a kubelet does (CRI PullImage) or the way a person does (``ctr images pull``).

Both can run in the background, so a test can watch containerd's content store while a pull is
in flight, then collect the result or the error.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any, Generic, TypeVar

import grpc

from testkit.cri_pb import api_pb2

from .containerd import selected_release

IMAGE_SERVICE = "/runtime.v1.ImageService/"

R = TypeVar("R")


def _call(address: str, method: str, request: Any, response_type: Any, timeout: float) -> Any:
    """One short-lived channel per call: tests restart containerd, so nothing is cached."""
    with grpc.insecure_channel(f"unix://{address}") as channel:
        stub = channel.unary_unary(
            IMAGE_SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return stub(request, timeout=timeout)


def cri_pull(address: str, ref: str, timeout: float = 120.0) -> str:
    """PullImage as kubelet sends it; returns containerd's image_ref (the config digest)."""
    request = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image=ref),
        sandbox_config=api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name="e2e", uid="e2e-uid", namespace="default")
        ),
    )
    response = _call(address, "PullImage", request, api_pb2.PullImageResponse, timeout)
    image_ref: str = response.image_ref
    return image_ref


def cri_remove(address: str, ref: str, timeout: float = 30.0) -> None:
    request = api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref))
    _call(address, "RemoveImage", request, api_pb2.RemoveImageResponse, timeout)


def cri_image_status(address: str, ref: str, timeout: float = 10.0) -> api_pb2.Image | None:
    """The CRI view of one image, or None when containerd does not have it."""
    request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref))
    response = _call(address, "ImageStatus", request, api_pb2.ImageStatusResponse, timeout)
    if not response.HasField("image"):
        return None
    image: api_pb2.Image = response.image
    return image


def cri_list_images(address: str, timeout: float = 10.0) -> list[api_pb2.Image]:
    response = _call(
        address, "ListImages", api_pb2.ListImagesRequest(), api_pb2.ListImagesResponse, timeout
    )
    return list(response.images)


def ctr_pull(
    address: str,
    ref: str,
    namespace: str = "k8s.io",
    plain_http: bool = True,
    *,
    snapshotter: str = "native",
    platform: str | None = None,
    all_platforms: bool = False,
    timeout: float = 120.0,
) -> str:
    """``ctr images pull`` (which unpacks too) with the selected release's own ``ctr`` (2.x's
    pulls through the transfer service); returns its output, raises with it on failure."""
    cmd = [selected_release().ctr, "--address", address, "--namespace", namespace, "images", "pull"]
    cmd += ["--snapshotter", snapshotter]
    if plain_http:
        cmd.append("--plain-http")
    if platform:
        cmd += ["--platform", platform]
    if all_platforms:
        cmd.append("--all-platforms")
    cmd.append(ref)
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout)
    return proc.stdout


class BackgroundPull(Generic[R]):
    """A pull running in a thread; ``wait()`` returns its result or re-raises its error."""

    def __init__(self, name: str, target: Any, *args: Any, **kwargs: Any) -> None:
        self.result: R | None = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._done = threading.Event()

        def run() -> None:
            try:
                self.result = target(*args, **kwargs)
            except BaseException as exc:
                self.error = exc
            finally:
                self.finished = time.monotonic()
                self._done.set()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return self._done.is_set()

    @property
    def elapsed(self) -> float:
        """Seconds from start to finish (or to now, while still running)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    def wait(self, timeout: float) -> R:
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.thread.name} still running after {timeout:.1f}s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def start_cri_pull(address: str, ref: str, timeout: float = 120.0) -> BackgroundPull[str]:
    return BackgroundPull(f"cri-pull {ref}", cri_pull, address, ref, timeout)


def start_ctr_pull(address: str, ref: str, **kwargs: Any) -> BackgroundPull[str]:
    """Same keyword arguments as ``ctr_pull``."""
    return BackgroundPull(f"ctr-pull {ref}", ctr_pull, address, ref, **kwargs)
