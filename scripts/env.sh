# Sourced by the other scripts: system packages the build needs, and CPU flags for llama.cpp.
# shellcheck shell=bash

# cmake + clang/libclang build llama.cpp and its bindings; python3-pip fetches models.
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >&2
fi

# .cargo/config.toml targets AVX-512 + VNNI CPUs (without AMX, see there). Elsewhere, fall back
# to a portable AVX2 build rather than crash with an illegal instruction.
if [ -z "${RUSTFLAGS:-}" ] && [ -r /proc/cpuinfo ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  for f in avx512f avx512bw avx512cd avx512dq avx512vl avx512_vnni avx512vbmi avx_vnni; do
    if ! grep -qw "$f" <<<"$flags"; then
      if grep -qw avx2 <<<"$flags"; then
        export RUSTFLAGS="-C target-cpu=x86-64-v3"
      else
        export RUSTFLAGS="-C target-cpu=x86-64"
      fi
      export GGML_AVX512=OFF
      echo "CPU lacks $f: building with RUSTFLAGS='$RUSTFLAGS'" >&2
      break
    fi
  done
fi
