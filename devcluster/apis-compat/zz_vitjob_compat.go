// Overlay added by devcluster/build.sh to a copy of volcano.sh/apis v1.14.0 in
// pkg/apis/scheduling/v1beta1, so that Volcano v1.15.1 compiles against it: the module proxy serves
// volcano.sh/apis v1.14.0 but not v1.15.1, and v1.15.1 uses one constant that v1.14.0 lacks.
// Its value is the one Volcano's queue-allocation-gate design document defines
// (GroupName + "/queue-allocation-gate"). The v1.15.1 CRDs are installed as released; fields that
// only v1.15 types carry are unknown to these binaries (vitjob uses none of them).

package v1beta1

// QueueAllocationGateKey marks pods whose scheduling gate the Volcano scheduler removes.
const QueueAllocationGateKey = GroupName + "/queue-allocation-gate"
