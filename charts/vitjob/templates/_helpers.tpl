{{/*
Names and labels only: the chart renders no job. The VitJob (templates/vitjob.yaml) carries the values;
the vitjob controller renders its stages with vitjob.render, the one place jobs are written.
*/}}

{{/* vitjob.chart: the helm.sh/chart label value. */}}
{{- define "vitjob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* vitjob.name: the VitJob's name, `name` or else the release name. */}}
{{- define "vitjob.name" -}}
{{- .Values.name | default .Release.Name -}}
{{- end -}}

{{/* vitjob.cpuImage: the vitjob cpu image of this chart's appVersion (vitjob/images.py names it so). */}}
{{- define "vitjob.cpuImage" -}}
{{- printf "docker.io/vitjob/vitjob-cpu:%s" .Chart.AppVersion -}}
{{- end -}}

{{/*
vitjob.labels: labels of the VitJob and the test hook's objects.
  {{ include "vitjob.labels" (dict "root" $ "component" "pipeline") }}
*/}}
{{- define "vitjob.labels" -}}
app.kubernetes.io/name: "vitjob"
app.kubernetes.io/instance: {{ include "vitjob.name" .root | toJson }}
app.kubernetes.io/component: {{ .component | toJson }}
app.kubernetes.io/managed-by: {{ .root.Release.Service | toJson }}
helm.sh/chart: {{ include "vitjob.chart" .root | toJson }}
{{- end -}}
