{{- define "dbstash.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dbstash.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dbstash.labels" -}}
app.kubernetes.io/name: {{ include "dbstash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dbstash.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbstash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dbstash.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dbstash.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The pod spec both modes share: one container, secrets as files, a read-only root filesystem. */}}
{{- define "dbstash.podSpec" -}}
{{- $root := . -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "dbstash.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: dbstash
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    env:
      - name: BACKUP_SCHEDULE
        value: {{ if eq .Values.mode "cronjob" }}once{{ else }}{{ .Values.service.schedule | quote }}{{ end }}
      {{- if eq .Values.mode "service" }}
      - name: HEALTH_PORT
        value: {{ .Values.service.healthPort | quote }}
      {{- end }}
      - name: TMPDIR
        value: /tmp
      {{- range $name, $value := .Values.env }}
      {{- if or (eq $name "BACKUP_SCHEDULE") (eq $name "HEALTH_PORT") }}
      {{- fail (printf "env.%s: set by the chart from mode (cronjob.schedule / service.schedule / service.healthPort)" $name) }}
      {{- end }}
      {{- if and (hasSuffix "_FILE" $name) (hasPrefix "/run/secrets/" (toString $value)) }}
      {{- fail (printf "env.%s: mount secrets with the secrets list, not a path in env" $name) }}
      {{- end }}
      - name: {{ $name }}
        value: {{ $value | toString | quote }}
      {{- end }}
      {{- range .Values.secrets }}
      {{- if not (hasSuffix "_FILE" .variable) }}
      {{- fail (printf "secrets: %s is not a *_FILE variable (secrets are mounted as files)" .variable) }}
      {{- end }}
      - name: {{ .variable }}
        value: {{ printf "/run/secrets/%s/%s" .secretName .key | quote }}
      {{- end }}
    {{- if eq .Values.mode "service" }}
    ports:
      - name: http
        containerPort: {{ .Values.service.healthPort }}
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      {{- toYaml .Values.service.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet: {path: /healthz, port: http}
      {{- toYaml .Values.service.probes.readiness | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- range $secret := (include "dbstash.secretNames" $root | fromYamlArray) }}
      - name: {{ printf "secret-%s" $secret | trunc 63 | trimSuffix "-" }}
        mountPath: {{ printf "/run/secrets/%s" $secret }}
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmp.sizeLimit }}
      {{- with .Values.tmp.medium }}
      medium: {{ . }}
      {{- end }}
  {{- range $secret := (include "dbstash.secretNames" $root | fromYamlArray) }}
  - name: {{ printf "secret-%s" $secret | trunc 63 | trimSuffix "-" }}
    secret:
      secretName: {{ $secret }}
      defaultMode: 0400
      items:
        {{- range $root.Values.secrets }}
        {{- if eq .secretName $secret }}
        - key: {{ .key }}
          path: {{ .key }}
        {{- end }}
        {{- end }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The distinct Secret names of .Values.secrets, as a YAML list. */}}
{{- define "dbstash.secretNames" -}}
{{- $names := list -}}
{{- range .Values.secrets -}}
{{- $names = append $names .secretName -}}
{{- end -}}
{{- $names | uniq | toYaml -}}
{{- end -}}
