{{/*
Helpers of the vitjob chart. The Volcano Job they build is the one `vitjob render` builds
(vitjob/render.py, manifests/volcano-job.yaml.j2); tests/test_chart.py compares the two as parsed objects.
Every user string reaches the YAML through `toJson`: one double-quoted scalar, never extra fields.
*/}}

{{/*
vitjob.chart: the helm.sh/chart label value, e.g. "vitjob-0.1.0".
  {{ include "vitjob.chart" . }}
*/}}
{{- define "vitjob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
vitjob.stages: the stages of this release as a JSON list: .Values.stage, then .Values.then.
  {{ include "vitjob.stages" . | fromJsonArray }}
*/}}
{{- define "vitjob.stages" -}}
{{- prepend (.Values.then | default list) .Values.stage | toJson -}}
{{- end -}}

{{/*
vitjob.layout: the shape of the job of one stage as JSON (vitjob/spec.py JobSpec properties):
jobHw, totalCards, podCards, numPods, on310 (infer310 on ascend), on910 (ascend, not infer310).
  {{ include "vitjob.layout" (dict "root" $ "stage" "train") | fromJson }}
*/}}
{{- define "vitjob.layout" -}}
{{- $v := .root.Values -}}
{{- $stage := .stage -}}
{{- $jobHw := $v.hw -}}
{{- if and (eq $v.hw "gpu") (eq $stage "infer310") -}}{{- $jobHw = "cpu" -}}{{- end -}}
{{- $total := int $v.cards -}}
{{- if has $stage (list "eval" "export" "infer310") -}}{{- $total = 1 -}}{{- end -}}
{{- $podCards := $total -}}
{{- if eq $jobHw "ascend" -}}
{{- $podCards = min $total 8 -}}
{{- else if eq $jobHw "gpu" -}}
{{- $podCards = min $total (max (int $v.gpusPerPod) 1) -}}
{{- else -}}
{{- $podCards = min $total (int ($v.cardsPerPod | default $total)) -}}
{{- end -}}
{{- if lt (int $podCards) 1 -}}{{- $podCards = 1 -}}{{- end -}}
{{- $on310 := and (eq $stage "infer310") (eq $v.hw "ascend") -}}
{{- dict "jobHw" $jobHw "totalCards" $total "podCards" $podCards "numPods" (max 1 (div $total $podCards))
      "on310" $on310 "on910" (and (eq $v.hw "ascend") (not $on310)) | toJson -}}
{{- end -}}

{{/*
vitjob.baseName: the pipeline base name; the job of stage S is "<baseName>-<S>".
.Values.name, else the release name ('.' -> '-') truncated so that the longest pod name
"<baseName>-<stage>-worker-<n-1>" fits in 63 characters. From revision 2 on, "-r<revision>" is appended:
a Volcano Job cannot be updated in place, so every upgrade creates new jobs (README: upgrades).
  {{ include "vitjob.baseName" . }}
*/}}
{{- define "vitjob.baseName" -}}
{{- $suffix := "" -}}
{{- if gt (int .Release.Revision) 1 -}}{{- $suffix = printf "-r%d" (int .Release.Revision) -}}{{- end -}}
{{- if .Values.name -}}
{{- printf "%s%s" .Values.name $suffix -}}
{{- else -}}
{{- $longest := 0 -}}
{{- range $stage := include "vitjob.stages" . | fromJsonArray -}}
{{- $layout := include "vitjob.layout" (dict "root" $ "stage" $stage) | fromJson -}}
{{- $tail := printf "-%s-worker-%d" $stage (sub (int $layout.numPods) 1) -}}
{{- $longest = max $longest (len $tail) -}}
{{- end -}}
{{- $budget := max 1 (sub 63 (add $longest (len $suffix))) -}}
{{- printf "%s%s" (.Release.Name | replace "." "-" | trunc (int $budget) | trimSuffix "-") $suffix -}}
{{- end -}}
{{- end -}}

{{/*
vitjob.defaultImage: docker.io/vitjob/<repository>:<appVersion> for an image kind (vitjob/images.py).
  {{ include "vitjob.defaultImage" (dict "root" $ "kind" "ascend310") }}
*/}}
{{- define "vitjob.defaultImage" -}}
{{- $repositories := dict "ascend" "vitjob-ascend" "gpu" "vitjob-gpu" "cpu" "vitjob-cpu" "ascend310" "vitjob-ascend310-infer" -}}
{{- printf "docker.io/vitjob/%s:%s" (get $repositories .kind) .root.Chart.AppVersion -}}
{{- end -}}

{{/*
vitjob.jobName: the Volcano Job of a stage.
  {{ include "vitjob.jobName" (dict "root" $ "stage" "train") }}
*/}}
{{- define "vitjob.jobName" -}}
{{- printf "%s-%s" (include "vitjob.baseName" .root) .stage -}}
{{- end -}}

{{/*
vitjob.labels: app.kubernetes.io/* and helm.sh/chart labels of the chart's own objects (controller,
RBAC, test pod), which `vitjob render` does not make.
  {{ include "vitjob.labels" (dict "root" $ "component" "controller") }}
*/}}
{{- define "vitjob.labels" -}}
{{ include "vitjob.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "vitjob.baseName" .root | toJson }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | toJson }}
app.kubernetes.io/managed-by: {{ .root.Release.Service | toJson }}
helm.sh/chart: {{ include "vitjob.chart" .root | toJson }}
{{- end -}}

{{/*
vitjob.selectorLabels: the minimal, immutable subset of vitjob.labels for selectors.
  {{ include "vitjob.selectorLabels" (dict "root" $ "component" "controller") }}
*/}}
{{- define "vitjob.selectorLabels" -}}
app.kubernetes.io/name: "vitjob"
app.kubernetes.io/instance: {{ .root.Release.Name | toJson }}
app.kubernetes.io/component: {{ .component | toJson }}
{{- end -}}
