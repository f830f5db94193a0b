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
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pulltrace.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}
