{{/* vim: set filetype=mustache: */}}

{{/* Chart name, overridable. */}}
{{- define "market-spine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name "<release>-<chart>" (or just the release when it already contains the chart name).
Truncated to 40 characters so that every derived name stays valid: CronJob names must leave
11 characters for the Job suffix (52 max), e.g. "<fullname>-enqueue-nms-tier-1".
*/}}
{{- define "market-spine.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "market-spine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "market-spine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "market-spine.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels. Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "market-spine.labels" -}}
{{ include "market-spine.selectorLabels" . }}
app.kubernetes.io/part-of: market-spine
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "market-spine.chart" .ctx }}
{{- with .ctx.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image reference: registry/repository, then @digest or :tag (default appVersion). */}}
{{- define "market-spine.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "market-spine.pipelineImage" -}}
{{- default (include "market-spine.image" .) .Values.pipelineJobs.image -}}
{{- end -}}

{{- define "market-spine.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "market-spine.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "market-spine.cronjobServiceAccountName" -}}
{{- if .Values.cronjobs.serviceAccount.create -}}
{{- default (printf "%s-cronjob" (include "market-spine.fullname" .)) .Values.cronjobs.serviceAccount.name -}}
{{- else -}}
{{- required "cronjobs.serviceAccount.name is required when cronjobs.serviceAccount.create is false" .Values.cronjobs.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount of the pipeline Jobs; "" means the namespace's default account. */}}
{{- define "market-spine.pipelineServiceAccountName" -}}
{{- if .Values.pipelineJobs.serviceAccount.create -}}
{{- default (printf "%s-pipeline" (include "market-spine.fullname" .)) .Values.pipelineJobs.serviceAccount.name -}}
{{- else -}}
{{- .Values.pipelineJobs.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the database URL: the chart's own when database.url is set. */}}
{{- define "market-spine.databaseSecretName" -}}
{{- if .Values.database.url -}}
{{- printf "%s-database" (include "market-spine.fullname" .) -}}
{{- else -}}
{{- required "set database.existingSecret (a Secret with the PostgreSQL URL) or database.url" .Values.database.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "market-spine.databaseSecretKey" -}}
{{- if .Values.database.url -}}url{{- else -}}{{ .Values.database.existingSecretKey }}{{- end -}}
{{- end -}}

{{/* The SPINE_DATABASE_URL env var, read from the Secret (never from a ConfigMap or a literal). */}}
{{- define "market-spine.databaseEnv" -}}
- name: SPINE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "market-spine.databaseSecretName" . }}
      key: {{ include "market-spine.databaseSecretKey" . }}
{{- end -}}

{{/*
The calendar setting (SPINE_PUBLICATION_GRACE_DAYS) of the operator, the doctor CronJob and the
enqueue CronJobs. FINRA's schedule itself is built into spine.
*/}}
{{- define "market-spine.calendarEnv" -}}
- name: SPINE_PUBLICATION_GRACE_DAYS
  value: {{ .Values.calendar.publicationGraceDays | quote }}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "market-spine.podCommon" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.global.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The writable scratch volume every container mounts at /tmp (the root filesystem is read-only). */}}
{{- define "market-spine.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "market-spine.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Kebab-case of a tier for object names: NMS_TIER_1 -> nms-tier-1. */}}
{{- define "market-spine.tierSlug" -}}
{{- . | lower | replace "_" "-" -}}
{{- end -}}

{{/*
CronJob name "<fullname>-<suffix>", with the fullname shortened so the whole stays within 52
characters (the CronJob controller appends an 11-character suffix to name each Job).
Call with (dict "ctx" $ "suffix" "enqueue-otc").
*/}}
{{- define "market-spine.cronjobName" -}}
{{- $max := sub 51 (len .suffix) | int -}}
{{- printf "%s-%s" (include "market-spine.fullname" .ctx | trunc $max | trimSuffix "-") .suffix -}}
{{- end -}}
