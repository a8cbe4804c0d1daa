{{/*
The pipeline controller's objects, as `vitjob controller --render` makes them (manifests/controller-*.yaml.j2,
vitjob.render.build_controller_context): named vitjob-controller, labelled as vitjob labels them, plus helm.sh/chart.
  {{ include "vitjob.controller.labels" . }}
*/}}
{{- define "vitjob.controller.labels" -}}
app.kubernetes.io/name: "vitjob"
app.kubernetes.io/component: "controller"
app.kubernetes.io/instance: "vitjob-controller"
app.kubernetes.io/managed-by: "vitjob"
helm.sh/chart: {{ include "vitjob.chart" . | toJson }}
{{- end -}}

{{/* vitjob.controller.selectorLabels: the Deployment's selector (immutable). */}}
{{- define "vitjob.controller.selectorLabels" -}}
app.kubernetes.io/name: "vitjob"
app.kubernetes.io/component: "controller"
{{- end -}}
