{{- define "inori.name" -}}inori-integrations{{- end -}}

{{- define "inori.fullname" -}}
{{- if contains "inori-integrations" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-inori-integrations" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "inori.labels" -}}
app.kubernetes.io/name: {{ include "inori.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "inori.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inori.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "inori.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "inori.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "inori.image" -}}
{{- if .Values.image.digest -}}{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}{{- end -}}
{{- end -}}

{{/* The peering object's name: one per release, so releases never elect across each other. */}}
{{- define "inori.peeringName" -}}{{ include "inori.fullname" . }}{{- end -}}

{{/* RBAC rules needed in every namespace the operator serves. */}}
{{- define "inori.tenantRules" }}
# Watch the three kinds (kopf) ...
- apiGroups: [integrations.inori.io]
  resources: [webhooks, apikeys, integrationevents]
  verbs: [list, watch]
# ... and write only their status, never their spec.
- apiGroups: [integrations.inori.io]
  resources: [webhooks/status, apikeys/status, integrationevents/status]
  verbs: [patch]
# The ApiKey finalizer that removes a key's hash before the ApiKey goes.
- apiGroups: [integrations.inori.io]
  resources: [apikeys]
  verbs: [patch]
# POST /v1/events creates events; finished events are deleted after their retention.
- apiGroups: [integrations.inori.io]
  resources: [integrationevents]
  verbs: [create, delete]
# Webhook signing Secrets are read (and watched for changes) ...
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
# ... and an ApiKey's plaintext is written once into the tenant's Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
# Warning/Normal Events on Webhooks (Failing, Recovered).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
