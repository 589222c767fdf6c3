#!/usr/bin/env bash
# The prepared GPU check (docs/gpu-check.md): on a lent GPU machine, after `make gpu-wheels` here and with
# gpu-wheels/ carried along, `bash tools/gpu_check.sh`; on any CPU, `bash tools/gpu_check.sh --dry-run`.
# Installs the carried wheels offline into a folder of their own (nothing of the machine's Python changes),
# then runs tools/gpu_check.py with every argument given here. Environment: PYTHON (default python3),
# GPU_WHEELS (default gpu-wheels), GPU_CHECK_SITE (where they go, default a fresh temporary folder),
# GPU_CHECK_OUT or OUT (the output folder, default gpu-check), GPU_CHECK_DRY=1 (as --dry-run).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
wheels="${GPU_WHEELS:-gpu-wheels}"
out="${GPU_CHECK_OUT:-${OUT:-gpu-check}}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do  # --out DIR / --out=DIR: the log goes there too
    case "${args[i]}" in
        --out) out="${args[i + 1]:-$out}" ;;
        --out=*) out="${args[i]#--out=}" ;;
    esac
done
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
if compgen -G "$wheels/*.whl" >/dev/null; then
    if [[ -n ${GPU_CHECK_SITE:-} ]]; then
        site="$GPU_CHECK_SITE"
    else
        site="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")"
        trap 'rm -rf "$site"' EXIT
    fi
    echo "installing $(ls "$wheels"/*.whl | wc -l) wheel(s) from $wheels/ into $site (offline)" | tee -a "$log"
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl >>"$log" 2>&1 || { echo "error: pip install failed, see $log" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    args+=(--wheels "$wheels")
else
    echo "no wheels in $wheels/: using $python's own packages (make gpu-wheels makes them)" | tee -a "$log"
fi
export PYTHONUNBUFFERED=1
"$python" -m tools.gpu_check --out "$out" --log-append "${args[@]}"
