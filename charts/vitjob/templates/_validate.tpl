{{/*
vitjob.validate: the rules values.schema.json cannot express, worded as the CLI words them
(vitjob/spec.py, with chart value names: gpusPerPod for gpus_per_pod, nodeSelector for node_selector…).
Every problem is collected and reported by one `fail`, one per line, as `vitjob render` does.
  {{- include "vitjob.validate" . -}}
*/}}
{{- define "vitjob.validate" -}}
{{- $v := .Values -}}
{{- $problems := list -}}
{{- $base := include "vitjob.baseName" . -}}
{{- $cards := int $v.cards -}}
{{- if not (regexMatch `^[a-z]([-a-z0-9]*[a-z0-9])?$` $base) -}}
{{- $problems = append $problems (printf "name: '%s' is not a DNS-1035 label: use lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (e.g. vit-b16)%s" $base (ternary "" " (it is the release name: set --set name=NAME)" (not (empty $v.name)))) -}}
{{- end -}}
{{- if and (eq $v.hw "ascend") (not (has $cards (list 1 2 4 8))) (ne (mod $cards 8) 0) -}}
{{- $problems = append $problems (printf "cards: %d is not allowed for hw ascend; use 1, 2, 4, 8 (one pod) or a multiple of 8 such as 16 (8 cards per pod, one pod per node)" $cards) -}}
{{- end -}}
{{- $g := int $v.gpusPerPod -}}
{{- if and (eq $v.hw "gpu") (gt $cards $g) (ne (mod $cards $g) 0) -}}
{{- $problems = append $problems (printf "cards: %d is not allowed for hw gpu with %d GPUs per pod; use at most %d (one pod) or a multiple of %d such as %d, or set gpusPerPod" $cards $g $g $g (mul $g (add (div $cards $g) 1))) -}}
{{- end -}}
{{- if not (kindIs "invalid" $v.cardsPerPod) -}}
{{- if ne $v.hw "cpu" -}}
{{- $problems = append $problems "cardsPerPod: applies to hw cpu only; ascend uses up to 8 cards per pod and gpu uses gpusPerPod; remove it" -}}
{{- else if or (lt (int $v.cardsPerPod) 1) (ne (mod $cards (int $v.cardsPerPod)) 0) -}}
{{- $problems = append $problems (printf "cardsPerPod: %d does not divide cards=%d; use a divisor of %d such as %d (one pod)" (int $v.cardsPerPod) $cards $cards $cards) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := $v.nodeSelector -}}
{{- if not (include "vitjob.isQualifiedName" $key) -}}
{{- $problems = append $problems (printf "nodeSelector: key '%s' is not a valid label key (e.g. accelerator-type)" $key) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $value)) (not (include "vitjob.isLabelValue" $value)) -}}
{{- $problems = append $problems (printf "nodeSelector.%s: '%s' is not a valid label value" $key $value) -}}
{{- end -}}
{{- end -}}
{{- range $index, $toleration := $v.tolerations -}}
{{- if and (eq ($toleration.operator | default "Equal") "Exists") $toleration.value -}}
{{- $problems = append $problems (printf "tolerations[%d]: value: must be empty with operator Exists; use operator Equal to match a value" $index) -}}
{{- end -}}
{{- if and $toleration.key (not (include "vitjob.isQualifiedName" $toleration.key)) -}}
{{- $problems = append $problems (printf "tolerations[%d]: key: '%s' is not a valid taint key" $index $toleration.key) -}}
{{- end -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.lr)) (le (float64 $v.lr) 0.0) -}}
{{- $problems = append $problems (printf "lr: %s is not allowed; use a positive number such as 0.0003" (include "vitjob.pythonFloat" (float64 $v.lr))) -}}
{{- end -}}
{{- if and $v.image (not (regexMatch (include "vitjob.imageRefPattern" .) $v.image)) -}}
{{- $problems = append $problems (printf "image: '%s' is not an image reference such as registry.example.com/vitjob:0.1.0; leave it empty for the default image of the hardware" $v.image) -}}
{{- end -}}
{{- if eq (int $v.schedPort) (int $v.rdzvPort) -}}
{{- $problems = append $problems (printf "rdzvPort: %d is also schedPort; use two different ports" (int $v.rdzvPort)) -}}
{{- end -}}
{{- $reservedEnv := list "MS_SCHED_PORT" "PYTHONUNBUFFERED" "MS_ROLE" "MS_SCHED_HOST" "MS_WORKER_NUM" "MS_NODE_ID" "RANK_TABLE_FILE" "RANK_ID" "RANK_SIZE" "DEVICE_ID" -}}
{{- range $key, $_ := $v.env -}}
{{- if not (regexMatch `^[A-Za-z_][A-Za-z0-9_]*$` $key) -}}
{{- $problems = append $problems (printf "env: '%s' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)" $key) -}}
{{- else if or (has $key $reservedEnv) (hasPrefix "VITJOB_" $key) (hasPrefix "VC_" $key) (hasPrefix "VK_" $key) -}}
{{- $problems = append $problems (printf "env: %s is reserved for vitjob, Volcano and MindSpore's launcher (names starting with VITJOB_, VC_, VK_ and %s); pick another name, or set ports with schedPort/rdzvPort" $key (sortAlpha $reservedEnv | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := $v.labels -}}
{{- if not (include "vitjob.isQualifiedName" $key) -}}
{{- $problems = append $problems (printf "labels: '%s' is not a label key ([prefix/]name, name at most 63 characters of letters, digits, '-', '_', '.')" $key) -}}
{{- else if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "vitjob.io/" $key) (hasPrefix "volcano.sh/" $key) (hasPrefix "ring-controller.atlas" $key) -}}
{{- $problems = append $problems (printf "labels: %s is set by vitjob or Volcano; choose another key" $key) -}}
{{- end -}}
{{- if not (include "vitjob.isLabelValue" $value) -}}
{{- $problems = append $problems (printf "labels.%s: '%s' is not a label value (at most 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit)" $key $value) -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := $v.annotations -}}
{{- if not (include "vitjob.isQualifiedName" $key) -}}
{{- $problems = append $problems (printf "annotations: '%s' is not an annotation key ([prefix/]name)" $key) -}}
{{- end -}}
{{- end -}}
{{- $order := dict "train" 0 "eval" 1 "export" 2 "infer310" 3 -}}
{{- $previous := -1 -}}
{{- $ordered := true -}}
{{- range $stage := include "vitjob.stages" . | fromJsonArray -}}
{{- if le (int (get $order $stage)) $previous -}}{{- $ordered = false -}}{{- end -}}
{{- $previous = int (get $order $stage) -}}
{{- end -}}
{{- if not $ordered -}}
{{- $problems = append $problems (printf "then: %s: stages must follow stage %s in the order train → eval → export → infer310, each once (e.g. then: [eval, export, infer310])" (toJson $v.then) $v.stage) -}}
{{- end -}}
{{- if not $problems -}}
{{- range $stage := include "vitjob.stages" . | fromJsonArray -}}
{{- $layout := include "vitjob.layout" (dict "root" $ "stage" $stage) | fromJson -}}
{{- $last := printf "%s-%s-worker-%d" $base $stage (sub (int $layout.numPods) 1) -}}
{{- if gt (len $last) 63 -}}
{{- $excess := sub (len $last) 63 -}}
{{- $problems = append $problems (printf "name: '%s' makes pod name '%s' %d characters long; Kubernetes allows at most 63: shorten --name by %d character%s" $base $last (len $last) $excess (ternary "s" "" (gt $excess 1))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $problems -}}
{{- fail (printf "\ninvalid values (%d problem%s); fix each with -f VALUES or --set KEY=VALUE:\n  - %s" (len $problems) (ternary "" "s" (eq (len $problems) 1)) (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}

{{/* vitjob.isQualifiedName: "true" when the argument is a label/annotation key ([prefix/]name). */}}
{{- define "vitjob.isQualifiedName" -}}
{{- $prefix := "" -}}
{{- $name := . -}}
{{- if contains "/" . -}}
{{- $prefix = regexReplaceAll `/[^/]*$` . "" -}}
{{- $name = regexReplaceAll `^.*/` . "" -}}
{{- end -}}
{{- $prefixOk := or (not (contains "/" .)) (and (regexMatch `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$` $prefix) (le (len $prefix) 253)) -}}
{{- if and $prefixOk (regexMatch `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$` $name) (le (len $name) 63) -}}true{{- end -}}
{{- end -}}

{{/* vitjob.isLabelValue: "true" when the argument is a label value (empty included). */}}
{{- define "vitjob.isLabelValue" -}}
{{- if and (regexMatch `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$` .) (le (len .) 63) -}}true{{- end -}}
{{- end -}}

{{/* vitjob.imageRefPattern: the image reference grammar of vitjob/spec.py (_IMAGE_REF). */}}
{{- define "vitjob.imageRefPattern" -}}
{{- $component := `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*` -}}
{{- printf `^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?%s(?:/%s)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$` $component $component -}}
{{- end -}}
