#!/usr/bin/env bash
# Entrypoint of the Ascend images: loads the CANN toolkit environment (set_env.sh: library, operator
# and Python paths that MindSpore needs), then runs `vitjob launch` with the container's arguments.
# Pods should pass arguments (args:), not replace the entrypoint (command:), to keep this step.
set -euo pipefail
for env_script in "${ASCEND_TOOLKIT_HOME:-}/../set_env.sh" /usr/local/Ascend/ascend-toolkit/set_env.sh \
    /usr/local/Ascend/nnae/set_env.sh; do
  if [ -f "$env_script" ]; then
    set +u  # set_env.sh reads variables that may be unset
    # shellcheck disable=SC1090  # the path is chosen at run time
    source "$env_script"
    set -u
    break
  fi
done
exec vitjob launch "$@"
