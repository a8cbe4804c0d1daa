{{/*
vitjob.job: the Volcano Job of one stage, field for field what manifests/volcano-job.yaml.j2 renders
for the same settings, plus the helm.sh/chart label unless "bare" is true (the stage manifests stored
in the pipeline ConfigMap, which the controller creates outside Helm). See that template for the pod contract.
  {{ include "vitjob.job" (dict "root" $ "stage" "train") }}
*/}}
{{- define "vitjob.job" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $stage := .stage -}}
{{- $l := include "vitjob.layout" . | fromJson -}}
{{- $jobHw := $l.jobHw -}}
{{- $podCards := int $l.podCards -}}
{{- $numPods := int $l.numPods -}}
{{- $base := include "vitjob.baseName" $root -}}
{{- $job := printf "%s-%s" $base $stage -}}
{{- $pipeline := $v.pipeline | default $base -}}
{{- $labels := dict "app.kubernetes.io/name" "vitjob" "app.kubernetes.io/instance" $job
      "app.kubernetes.io/component" $stage "app.kubernetes.io/managed-by" "vitjob"
      "app.kubernetes.io/part-of" $pipeline "vitjob.io/hw" $jobHw "vitjob.io/cards" (toString (int $l.totalCards)) -}}
{{- if $l.on910 -}}{{- $_ := set $labels "ring-controller.atlas" "ascend-910" -}}{{- end -}}
{{- range $key, $value := $v.labels -}}{{- $_ := set $labels $key $value -}}{{- end -}}
{{- $nodeSelector := dict -}}
{{- if $l.on310 -}}{{- $_ := set $nodeSelector "accelerator" "huawei-Ascend310" -}}
{{- else if $l.on910 -}}{{- $_ := set $nodeSelector "accelerator" "huawei-Ascend910" -}}{{- end -}}
{{- range $key, $value := $v.nodeSelector -}}
{{- if kindIs "invalid" $value -}}{{- $_ := unset $nodeSelector $key -}}{{- else -}}{{- $_ := set $nodeSelector $key $value -}}{{- end -}}
{{- end -}}
{{- $imageKind := ternary "ascend310" $jobHw $l.on310 -}}
{{- $image := $v.image | default (include "vitjob.defaultImage" (dict "root" $root "kind" $imageKind)) -}}
{{- $device := "" -}}
{{- if $l.on310 -}}{{- $device = "huawei.com/Ascend310" -}}
{{- else if $l.on910 -}}{{- $device = "huawei.com/Ascend910" -}}
{{- else if eq $jobHw "gpu" -}}{{- $device = "nvidia.com/gpu" -}}{{- end -}}
{{- $cpuPerCard := get (dict "ascend" 8 "gpu" 8 "cpu" 2) $jobHw -}}
{{- $memPerCard := get (dict "ascend" 32 "gpu" 32 "cpu" 8) $jobHw -}}
{{- $requests := dict "cpu" ($v.resources.cpu | default (toString (mul $cpuPerCard $podCards)))
      "memory" ($v.resources.memory | default (printf "%dGi" (mul $memPerCard $podCards))) -}}
{{- if and $device (ne $device "nvidia.com/gpu") -}}{{- $_ := set $requests $device (toString $podCards) -}}{{- end -}}
{{- $dataDir := "/data" -}}
{{- if $v.data.subpath -}}{{- $dataDir = printf "/data/%s" $v.data.subpath -}}{{- end -}}
{{- $out := "$(VITJOB_OUTPUT_DIR)" -}}
{{- $args := list "vitjob" $stage -}}
{{- if eq $stage "train" -}}
{{- $args = concat $args (list "--preset" $v.preset "--data" "$(VITJOB_DATA_DIR)" "--output" (printf "%s/train" $out) "--device" $jobHw) -}}
{{- if not (kindIs "invalid" $v.epochs) -}}{{- $args = concat $args (list "--epochs" (toString (int64 $v.epochs))) -}}{{- end -}}
{{- if not (kindIs "invalid" $v.batchSize) -}}{{- $args = concat $args (list "--batch-size" (toString (int64 $v.batchSize))) -}}{{- end -}}
{{- if not (kindIs "invalid" $v.lr) -}}{{- $args = concat $args (list "--lr" (include "vitjob.pythonFloat" (float64 $v.lr))) -}}{{- end -}}
{{- if $v.pretrained -}}
{{- $args = concat $args (list "--pretrained" (ternary $v.pretrained (printf "$(VITJOB_DATA_DIR)/%s" $v.pretrained) (hasPrefix "/" $v.pretrained))) -}}
{{- end -}}
{{- else if eq $stage "eval" -}}
{{- $args = concat $args (list "--ckpt" (printf "%s/train" $out) "--data" "$(VITJOB_DATA_DIR)" "--preset" $v.preset "--device" $jobHw "--json-out" (printf "%s/train/metrics.json" $out)) -}}
{{- else if eq $stage "export" -}}
{{- $args = concat $args (list "--ckpt" (printf "%s/train" $out) "--preset" $v.preset "--device" $jobHw "--format" (ternary "MINDIR,AIR" "MINDIR" (eq $v.hw "ascend")) "--output" (printf "%s/export/vit_base.mindir" $out)) -}}
{{- else if eq $stage "infer310" -}}
{{- $args = concat $args (list "run" "--mindir" (printf "%s/export/vit_base.mindir" $out) "--data" "$(VITJOB_DATA_DIR)" "--workdir" (printf "%s/infer310" $out) "--runner" (ternary "ascend310" "cpu" $l.on310)) -}}
{{- end -}}
{{- $args = concat $args ($v.extraArgs | default list) -}}
---
apiVersion: batch.volcano.sh/v1alpha1
kind: Job
metadata:
  name: {{ $job | toJson }}
  namespace: {{ $root.Release.Namespace | toJson }}
  labels:
    {{- range $key, $value := $labels }}
    {{ $key | toJson }}: {{ $value | toJson }}
    {{- end }}
    {{- if not .bare }}
    helm.sh/chart: {{ include "vitjob.chart" $root | toJson }}
    {{- end }}
  {{- with $v.annotations }}
  annotations:
    {{- range $key, $value := . }}
    {{ $key | toJson }}: {{ $value | toJson }}
    {{- end }}
  {{- end }}
spec:
  schedulerName: volcano
  # Gang scheduling: every pod or none.
  minAvailable: {{ $numPods }}
  {{- with $v.queue }}
  queue: {{ . | toJson }}
  {{- end }}
  {{- with $v.priorityClass }}
  priorityClassName: {{ . | toJson }}
  {{- end }}
  maxRetry: {{ int64 $v.maxRetry }}
  {{- if not (kindIs "invalid" $v.ttlSecondsAfterFinished) }}
  ttlSecondsAfterFinished: {{ int64 $v.ttlSecondsAfterFinished }}
  {{- end }}
  # A lost or failed pod restarts the whole job; training resumes from its checkpoints.
  policies:
    - event: PodEvicted
      action: RestartJob
    - event: PodFailed
      action: RestartJob
  plugins:
    # VC_TASK_INDEX in every container.
    env: []
    # Headless service <job>, /etc/volcano/worker.host; peers resolve before they are ready.
    svc:
      - "--publish-not-ready-addresses=true"
  tasks:
    - name: worker
      replicas: {{ $numPods }}
      minAvailable: {{ $numPods }}
      # Without it a job whose pods all succeeded can stay Running (volcano#1163).
      policies:
        - event: TaskCompleted
          action: CompleteJob
      template:
        metadata:
          labels:
            {{- range $key, $value := $labels }}
            {{ $key | toJson }}: {{ $value | toJson }}
            {{- end }}
          {{- with $v.annotations }}
          annotations:
            {{- range $key, $value := . }}
            {{ $key | toJson }}: {{ $value | toJson }}
            {{- end }}
          {{- end }}
        spec:
          restartPolicy: Never
          {{- with $nodeSelector }}
          nodeSelector:
            {{- range $key, $value := . }}
            {{ $key | toJson }}: {{ $value | toJson }}
            {{- end }}
          {{- end }}
          {{- with $v.tolerations }}
          tolerations:
            {{- range . }}
            - operator: {{ .operator | default "Equal" | toJson }}
              {{- if hasKey . "key" }}
              key: {{ .key | toJson }}
              {{- end }}
              {{- if hasKey . "value" }}
              value: {{ .value | toJson }}
              {{- end }}
              {{- if hasKey . "effect" }}
              effect: {{ .effect | toJson }}
              {{- end }}
              {{- if hasKey . "tolerationSeconds" }}
              tolerationSeconds: {{ int64 .tolerationSeconds }}
              {{- end }}
            {{- end }}
          {{- end }}
          {{- if $l.on910 }}
          # One pod per node: an Ascend 910 pod takes a whole node's cards and HCCN network.
          affinity:
            podAntiAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
                - labelSelector:
                    matchExpressions:
                      - key: app.kubernetes.io/instance
                        operator: In
                        values:
                          - {{ $job | toJson }}
                  topologyKey: kubernetes.io/hostname
          {{- end }}
          containers:
            - name: vitjob
              image: {{ $image | toJson }}
              imagePullPolicy: {{ $v.imagePullPolicy | toJson }}
              command: ["vitjob", "launch", "--hw", {{ $jobHw | toJson }}, "--cards-per-pod", {{ toString $podCards | toJson }}, "--"]
              args:
                {{- range $args }}
                - {{ . | toJson }}
                {{- end }}
              env:
                {{- $env := list (list "VITJOB_JOB_NAME" $job) (list "VITJOB_TASK" "worker") (list "VITJOB_HW" $jobHw)
                      (list "VITJOB_STAGE" $stage) (list "VITJOB_CARDS_PER_POD" (toString $podCards))
                      (list "VITJOB_NUM_PODS" (toString $numPods)) (list "VITJOB_DATA_DIR" $dataDir)
                      (list "VITJOB_OUTPUT_DIR" (printf "/output/%s" $pipeline))
                      (list "MS_SCHED_PORT" (toString (int64 $v.schedPort))) (list "VITJOB_RDZV_PORT" (toString (int64 $v.rdzvPort)))
                      (list "PYTHONUNBUFFERED" "1") }}
                {{- range $key, $value := $v.env }}{{ $env = append $env (list $key $value) }}{{ end }}
                - name: "VITJOB_POD_IP"
                  valueFrom:
                    fieldRef:
                      fieldPath: "status.podIP"
                - name: "VITJOB_HOST_IP"
                  valueFrom:
                    fieldRef:
                      fieldPath: "status.hostIP"
                {{- range $env }}
                - name: {{ index . 0 | toJson }}
                  value: {{ index . 1 | toJson }}
                {{- end }}
              ports:
                - name: ms-sched
                  containerPort: {{ int64 $v.schedPort }}
                  protocol: TCP
                - name: rdzv
                  containerPort: {{ int64 $v.rdzvPort }}
                  protocol: TCP
              resources:
                requests:
                  {{- range $key, $value := $requests }}
                  {{ $key | toJson }}: {{ $value | toJson }}
                  {{- end }}
                {{- if $device }}
                limits:
                  {{ $device | toJson }}: {{ toString $podCards | toJson }}
                {{- end }}
              volumeMounts:
                - name: data
                  mountPath: /data
                  readOnly: true
                - name: output
                  mountPath: /output
                - name: dshm
                  mountPath: /dev/shm
                {{- if $l.on910 }}
                - name: podinfo
                  mountPath: /etc/vitjob/podinfo
                  readOnly: true
                - name: hccn-conf
                  mountPath: /etc/hccn.conf
                  readOnly: true
                {{- end }}
                {{- if eq $v.hw "ascend" }}
                - name: ascend-driver
                  mountPath: /usr/local/Ascend/driver
                  readOnly: true
                {{- end }}
          volumes:
            - name: data
              persistentVolumeClaim:
                claimName: {{ $v.data.pvc | toJson }}
            - name: output
              persistentVolumeClaim:
                claimName: {{ $v.output.pvc | toJson }}
            - name: dshm
              emptyDir:
                medium: Memory
            {{- if $l.on910 }}
            - name: podinfo
              downwardAPI:
                items:
                  - path: annotations
                    fieldRef:
                      fieldPath: metadata.annotations
                  - path: name
                    fieldRef:
                      fieldPath: metadata.name
            - name: hccn-conf
              hostPath:
                path: /etc/hccn.conf
                type: FileOrCreate
            {{- end }}
            {{- if eq $v.hw "ascend" }}
            - name: ascend-driver
              hostPath:
                path: /usr/local/Ascend/driver
                type: Directory
            {{- end }}
{{ end -}}

{{/*
vitjob.pythonFloat: a float as Python's repr() writes it ("0.0003", "1e-05", "2.0"), as `vitjob render`
passes --lr. Go's %v agrees with repr() below 1e16, where repr switches to "1e+16".
  {{ include "vitjob.pythonFloat" (float64 .Values.lr) }}
*/}}
{{- define "vitjob.pythonFloat" -}}
{{- $text := toString . -}}
{{- if regexMatch "^-?[0-9]+$" $text -}}{{- printf "%s.0" $text -}}{{- else -}}{{- $text -}}{{- end -}}
{{- end -}}
