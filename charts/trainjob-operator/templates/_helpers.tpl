{{/* Release full name: the release name alone when it already contains the chart name. */}}
{{- define "trainjob-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trainjob-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What a Service and the Deployment select pods by; never changes between upgrades. */}}
{{- define "trainjob-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trainjob-operator.labels" -}}
helm.sh/chart: {{ include "trainjob-operator.chart" . }}
{{ include "trainjob-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: trainjob-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "trainjob-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "trainjob-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trainjob-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "trainjob-operator.coordinatorImage" -}}
{{- printf "%s:%s" .Values.coordinator.image.repository (default .Chart.AppVersion .Values.coordinator.image.tag) -}}
{{- end -}}

{{/*
The rules the operator's role needs, derived from the API calls it makes (the ClusterRole and
each namespaced Role share them). `clusterwide` adds what only exists at cluster scope.
*/}}
{{- define "trainjob-operator.rules" -}}
# kopf lists and watches TrainJobs, patches them for its finalizer and progress annotations; the
# operator deletes a finished job once its ttlSecondsAfterFinished has passed.
- apiGroups: ["trainjob.dev"]
  resources: ["trainjobs"]
  verbs: ["list", "watch", "patch", "delete"]
# The operator merge-patches .status. `get` is never called by the operator: it creates a Role
# granting get/patch on trainjobs/status to each job's coordinator, and RBAC only lets it grant
# what it holds.
- apiGroups: ["trainjob.dev"]
  resources: ["trainjobs/status"]
  verbs: ["get", "patch"]
# kopf lists and watches the worker pods (the per-job pod index); the operator creates each
# attempt's pods, patches them to remove the gang's scheduling gate once all of them exist, and
# deletes them when the attempt ends or the job is suspended.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Per job: the report-token Secret, the headless Service and the coordinator's ServiceAccount.
# Created only: the operator never reads them back (a 409 tells it they exist), and garbage
# collection deletes them with the job.
- apiGroups: [""]
  resources: ["secrets", "services", "serviceaccounts"]
  verbs: ["create"]
# Per job: the coordinator's Role and RoleBinding (status of its own job only).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create"]
# kopf posts Events on TrainJobs (warnings and the operator's own events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.peering.enabled }}
# kopf peering: each replica lists and watches the peering objects to see the others...
- apiGroups: ["kopf.dev"]
  resources: [{{ if .clusterwide }}"clusterkopfpeerings"{{ else }}"kopfpeerings"{{ end }}]
  verbs: ["list", "watch"]
# ...and patches its heartbeat into this release's own peering object only.
- apiGroups: ["kopf.dev"]
  resources: [{{ if .clusterwide }}"clusterkopfpeerings"{{ else }}"kopfpeerings"{{ end }}]
  resourceNames: [{{ .Values.peering.name | quote }}]
  verbs: ["patch"]
{{- end }}
{{- if .clusterwide }}
# Lost nodes: the operator watches Nodes to see when a pod's node stops being Ready, and restarts
# the gang without waiting for Kubernetes' 5-minute eviction (failurePolicy.nodeLossSeconds).
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
# Node heartbeats: a failure that would end a job waits until the gang's nodes renew their Leases
# in kube-node-lease (or one is lost: a disruption), so a crashed node does not fail the job.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["list", "watch"]
# kopf's resource observer watches CRDs so that resources served later are noticed. Namespaced
# installs run with that scanning off (a Role cannot grant cluster-scoped reads).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}

{{/*
The dashboard's labels. Its own app.kubernetes.io/name: the operator's selector (name and
instance, immutable once installed) must not match the dashboard's pods.
*/}}
{{- define "trainjob-operator.dashboardSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-dashboard" .Chart.Name | trunc 63 }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dashboard
{{- end -}}

{{- define "trainjob-operator.dashboardLabels" -}}
helm.sh/chart: {{ include "trainjob-operator.chart" . }}
{{ include "trainjob-operator.dashboardSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: trainjob-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
