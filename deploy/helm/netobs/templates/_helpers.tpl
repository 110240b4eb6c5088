{{- define "netobs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "netobs.labels" -}}
app.kubernetes.io/name: netobs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "netobs.selector" -}}
app.kubernetes.io/name: netobs
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "netobs.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}{{ printf "%s@%s" $i.repository $i.digest }}
{{- else -}}{{ printf "%s:%s" $i.repository (default .Chart.AppVersion $i.tag) }}{{- end -}}
{{- end -}}

{{- define "netobs.sa" -}}
{{- $sa := index .root.Values.serviceAccounts .role -}}
{{- default (printf "%s-%s" (include "netobs.fullname" .root) .role) $sa.name -}}
{{- end -}}

{{/* The per-center configuration file: the common config plus the center's Kafka and ClickHouse. */}}
{{- define "netobs.centerConfig" -}}
{{- $c := .center -}}
{{- $kafka := dict "bootstrap_servers" $c.kafka.bootstrapServers -}}
{{- $ch := dict "host" $c.clickhouse.host "port" (int $c.clickhouse.port) -}}
{{- $center := dict "transport" (dict "kafka" $kafka) "store" (dict "clickhouse" $ch) -}}
{{- $ctl := dict "control" (dict "listen" "127.0.0.1:9400" "startup_wait_s" .root.Values.pipeline.startupWaitSeconds) -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.config) $center $ctl) -}}
{{- end -}}

{{/* Secret environment: references only. */}}
{{- define "netobs.secretEnv" -}}
- name: NETOBS__STORE__CLICKHOUSE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.clickhousePassword.name }}
      key: {{ .Values.secrets.clickhousePassword.key }}
{{- if .Values.secrets.kafkaSaslPassword.name }}
- name: NETOBS__TRANSPORT__KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.kafkaSaslPassword.name }}
      key: {{ .Values.secrets.kafkaSaslPassword.key }}
{{- end }}
{{- end -}}

{{- define "netobs.centerAffinity" -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - key: {{ .root.Values.centerLabel }}
            operator: In
            values: [{{ .center.name | quote }}]
{{- end -}}
