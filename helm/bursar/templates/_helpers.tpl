{{/* The chart name, or nameOverride. */}}
{{- define "bursar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of every resource: fullnameOverride, else release-name. */}}
{{- define "bursar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pod; never change them (StatefulSet selectors are immutable). */}}
{{- define "bursar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bursar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bursar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "bursar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: decision-service
{{- end -}}

{{- define "bursar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bursar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* grpc, http or tcp: the probe kind after resolving probes.mode=auto
(grpc without TLS; http with TLS, since kubelet's grpc probes speak
plaintext only). */}}
{{- define "bursar.probeMode" -}}
{{- if eq .Values.probes.mode "auto" -}}
{{- if .Values.tls.enabled -}}http{{- else -}}grpc{{- end -}}
{{- else -}}
{{- .Values.probes.mode -}}
{{- end -}}
{{- end -}}

{{/* The probe handler of the startup and liveness probes: the gRPC health
service, GET /healthz on the (plaintext) HTTP port, or a TCP connect. */}}
{{- define "bursar.livenessHandler" -}}
{{- $mode := include "bursar.probeMode" . -}}
{{- if eq $mode "grpc" -}}
grpc:
  port: {{ .Values.bursard.grpcPort }}
{{- else if eq $mode "http" -}}
httpGet:
  path: /healthz
  port: http
  scheme: HTTP
{{- else -}}
tcpSocket:
  port: grpc
{{- end -}}
{{- end -}}

{{/* The probe handler of the readiness probe: as above, but GET /readyz
(503 from the moment bursard starts draining). */}}
{{- define "bursar.readinessHandler" -}}
{{- if eq (include "bursar.probeMode" .) "http" -}}
httpGet:
  path: /readyz
  port: http
  scheme: HTTP
{{- else -}}
{{- include "bursar.livenessHandler" . -}}
{{- end -}}
{{- end -}}

{{/* The policy files as YAML (name: content): policies.files, or the chart's
files/policies when that is empty. */}}
{{- define "bursar.policyFiles" -}}
{{- $files := dict -}}
{{- if .Values.policies.files -}}
{{- $files = .Values.policies.files -}}
{{- else -}}
{{- range $path, $content := .Files.Glob "files/policies/*.yaml" -}}
{{- $_ := set $files (base $path) (toString $content) -}}
{{- end -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}
