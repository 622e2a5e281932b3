{{/* Names, labels and the pieces every pod of the chart shares. */}}

{{- define "recsys.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: <release>-fashion-recsys, or the release name when it already says it. */}}
{{- define "recsys.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "api"). */}}
{{- define "recsys.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "recsys.selectorLabels" . }}
{{- end -}}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "recsys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "recsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recsys.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "recsys.configName" -}}
{{- printf "%s-config" (include "recsys.fullname" .) -}}
{{- end -}}

{{- define "recsys.secretName" -}}
{{- default (printf "%s-secrets" (include "recsys.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "recsys.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "recsys.trainerImage" -}}
{{- $repo := default .Values.image.repository .Values.trainer.image.repository -}}
{{- $tag := default (printf "%s-trainer" (default .Chart.AppVersion .Values.image.tag)) .Values.trainer.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "recsys.processorsReplicas" -}}
{{- if kindIs "invalid" .Values.processors.replicas -}}
{{- .Values.kafka.purchasePartitions -}}
{{- else -}}
{{- .Values.processors.replicas -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations that roll the pods when the ConfigMap or the chart's Secret changes. */}}
{{- define "recsys.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{/* The environment every container reads: the ConfigMap, then the Secret. */}}
{{- define "recsys.envFrom" -}}
- configMapRef:
    name: {{ include "recsys.configName" . }}
- secretRef:
    name: {{ include "recsys.secretName" . }}
{{- end -}}

{{/* Volumes of every pod: /tmp (writable, the root filesystem is not) and the CA files. */}}
{{- define "recsys.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize | default "256Mi" }}
{{- if .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .root.Values.kafka.tls.caSecret }}
    items:
      - key: {{ .root.Values.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- if .root.Values.redis.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .root.Values.redis.caSecret }}
    items:
      - key: {{ .root.Values.redis.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "recsys.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/fashion-recsys/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.redis.caSecret }}
- name: redis-ca
  mountPath: /etc/fashion-recsys/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every component; call with (dict "root" $ "values" .Values.api). */}}
{{- define "recsys.podSpecCommon" -}}
serviceAccountName: {{ include "recsys.serviceAccountName" .root }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
