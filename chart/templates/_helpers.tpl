{{- define "pulltrace.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pulltrace.collector" -}}
{{- printf "%s-collector" (include "pulltrace.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pulltrace.agent" -}}
{{- printf "%s-agent" (include "pulltrace.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pulltrace.secret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-tokens" (include "pulltrace.fullname" .)) -}}
{{- end -}}

{{- define "pulltrace.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "pulltrace.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* repository@digest when a digest is given, else repository:tag (default appVersion). */ -}}
{{- define "pulltrace.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- /*
A token value as the string the processes compare: `--set auth.agentToken=12345` arrives as an
int64, a number in a values file as a float64 (YAML through JSON), which toString would print as
1.2345e+07. Past 2^53 a float64 has already lost digits, so that is refused, not guessed.
*/ -}}
{{- define "pulltrace.token" -}}
{{- $v := .value -}}
{{- if kindIs "float64" $v -}}
{{- if ge $v 9007199254740992.0 -}}
{{- fail (printf "%s: a number this long loses digits in a YAML values file; quote it" .name) -}}
{{- end -}}
{{- printf "%.0f" $v -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- toString $v -}}
{{- end -}}
{{- end -}}

{{- /* collector.watchNamespaces, a list or a comma-separated string, as a JSON list without
blanks or duplicates (include returns a string; callers fromJsonArray it). */ -}}
{{- define "pulltrace.watchNamespaces" -}}
{{- $raw := .Values.collector.watchNamespaces -}}
{{- if kindIs "string" $raw -}}
{{- $raw = splitList "," $raw -}}
{{- end -}}
{{- $names := list -}}
{{- range $raw -}}
{{- $names = append $names (trim .) -}}
{{- end -}}
{{- $names | compact | uniq | toJson -}}
{{- end -}}

{{- /* Restarts the pods when a user-given auth value changes. Only what the user wrote is
hashed: a generated token never changes once the Secret exists, and hashing a fresh random one
would restart every pod on every render (helm template, Argo CD, --dry-run). */ -}}
{{- define "pulltrace.authChecksum" -}}
{{- $auth := .root.Values.auth -}}
{{- $given := dict "agentToken" (include "pulltrace.token" (dict "value" $auth.agentToken "name" "auth.agentToken")) "existingSecret" $auth.existingSecret -}}
{{- if .withReadToken -}}
{{- $_ := set $given "readToken" (include "pulltrace.token" (dict "value" $auth.readToken "name" "auth.readToken")) -}}
{{- $_ := set $given "webhookSecret" (include "pulltrace.token" (dict "value" .root.Values.webhook.secret "name" "webhook.secret")) -}}
{{- end -}}
{{- toJson $given | sha256sum -}}
{{- end -}}
