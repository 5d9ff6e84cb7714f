#!/usr/bin/env bash
# Prepares a machine with no package registry (an NVIDIA GPU machine) to
# build, test and benchmark clred, from Debian .deb files fetched beforehand.
# See bench/gpu/README.md.
#
#   bench/gpu/prepare.sh download [--with-cmake]
#       On a Debian 12 machine that reaches Debian's archive: `apt-get download`
#       the packages clred needs and their library dependencies into
#       bench/gpu/debs (git-ignored; carry it to the GPU machine).
#
#   bench/gpu/prepare.sh run [--no-gpu] [--quick] [--skip-tests] [--skip-bench]
#                            [--out DIR] [--system] [-- BENCH_RUN_OPTIONS]
#       On the target: unpack the .debs into bench/gpu/prefix (never into /),
#       point CMake, pkg-config and LD_LIBRARY_PATH at it, register NVIDIA's
#       OpenCL driver when no NVIDIA platform is listed, build in
#       build-gpu/ (RelWithDebInfo), run the whole test suite on the GPU, then bench/run
#       and bench/night/run (clred run on a simulated night, with its trace).
#       Without a GPU (or with --no-gpu) it says so and does the same on the
#       CPU OpenCL device (POCL). Results go to DIR (default $OUT if set,
#       else bench/results). --system uses the system's packages instead
#       of the .debs. Options after -- go to bench/run (--sizes, --depths, ...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
debs="$here/debs"
prefix="$here/prefix"
arch_dir="usr/lib/x86_64-linux-gnu"

say() { echo "prepare: $*" >&2; }
die() { echo "prepare: $*" >&2; exit 1; }

# What clred builds against; the rest of what they need comes from the
# dependency closure below.
packages=(ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-headers opencl-c-headers opencl-clhpp-headers
          libcfitsio10 libcfitsio-dev libclfft2 libclfft-dev libvkfft-dev libinih1 libinih-dev pkgconf pkgconf-bin
          libpkgconf3 libpng16-16 libpng-dev libwcs7 wcslib-dev libavro23 libavro-dev zlib1g-dev)
cmake_packages=(cmake cmake-data)
# Present on any glibc system, or not libraries at all: leaving them out keeps
# the folder small, and a prefix copy of libc or libstdc++ would shadow the
# system's, which other programs on the machine were built against.
skip_base='libc6|libgcc-s1|libstdc\+\+6|gcc-[0-9]+-base|dpkg|tar|perl.*|libperl.*|lib.*-perl|procps|libproc2-.*|usr-is-merged|usrmerge|init-system-helpers|libsystemd0|libelogind0|libselinux1|libcrypt1|libncursesw6|libtinfo6|libacl1|libcap2|libmd0|libpcre2-.*|libgdbm.*|zlib1g|debconf|sensible-utils'
# wcslib-dev pulls PGPLOT's plotting stack (fonts, X, cairo, Fortran) and
# libpng-dev/zlib1g-dev the C library's headers: clred links only libwcs, and
# a machine with a C compiler has libc6-dev. Leaving them out keeps the
# folder within what one carry holds (64 MiB).
skip_unused='fonts-.*|ttf-.*|xfonts-.*|x11-common|libx11-.*|libxau6|libxcb.*|libxdmcp6|libxext6|libxrender1|libcairo2|libpixman-1-0|libfontconfig1|fontconfig-config|libfreetype6|libfontenc1|libbrotli1|libexpat1|libpgplot0|libgiza0|libpgsbox7|libgfortran5|libquadmath0|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt-dev|libnsl-dev|libtirpc-dev|rpcsvc-proto|install-info|cdebconf|libdebian-installer4|libnewt0\.52|libslang2|libtextwrap1|lsb-base|sysvinit-utils|readline-common|libreadline8'
skip_regex="^(${skip_base}|${skip_unused})\$"

download() {
  local with_cmake=0
  [ "${1:-}" = "--with-cmake" ] && with_cmake=1
  command -v apt-get >/dev/null || die "download needs apt-get (a Debian machine that reaches Debian's archive)"
  local wanted=("${packages[@]}")
  [ "$with_cmake" = 1 ] && wanted+=("${cmake_packages[@]}")
  if ! apt-cache show libcfitsio10 >/dev/null 2>&1; then
    say "apt's package lists are empty: running apt-get update"
    apt-get update -qq
  fi
  # Library dependencies, recursively (apt-cache depends), minus the base system.
  local closure
  closure="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${wanted[@]}" | grep -v '^ ' | grep -v '^<' | sort -u | grep -Ev "$skip_regex")"
  mkdir -p "$debs"
  rm -f "$debs"/*.deb
  # shellcheck disable=SC2086
  (cd "$debs" && apt-get -o APT::Sandbox::User=root download -qq $closure)
  printf '%s\n' $closure >"$debs/PACKAGES"
  say "$(ls "$debs"/*.deb | wc -l) packages, $(du -sh "$debs" | cut -f1), in $debs:"
  tr '\n' ' ' <"$debs/PACKAGES" >&2
  echo >&2
}

# ---- unpacking into the prefix

is_system_soname() { ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n {found = 1} END {exit !found}'; }

unpack() {
  ls "$debs"/*.deb >/dev/null 2>&1 || die "no .deb files in $debs: run 'bench/gpu/prepare.sh download' on a Debian machine first and carry $debs here"
  rm -rf "$prefix"
  mkdir -p "$prefix/root" "$prefix/lib" "$prefix/pkgconfig"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$prefix/root"; done
  local r="$prefix/root"
  # Debian's files name /usr: point them at the prefix.
  for f in "$r/$arch_dir"/pkgconfig/*.pc "$r/usr/share/pkgconfig"/*.pc; do
    [ -e "$f" ] || continue
    sed -e "s|^prefix=/usr|prefix=$r/usr|" -e "s|=/usr/|=$r/usr/|g" "$f" >"$prefix/pkgconfig/$(basename "$f")"
  done
  find "$r/$arch_dir/cmake" -name '*.cmake' -exec sed -i "s|\"/usr/lib/x86_64-linux-gnu/|\"$r/usr/lib/x86_64-linux-gnu/|g" {} + 2>/dev/null || true
  # The libraries clred links are always the prefix's; another library only
  # when the system has no library of that name, so that nothing the machine
  # already has is shadowed.
  local lib name
  # By soname (lib*.so.N): that is the name the dynamic loader looks for.
  for lib in "$r/$arch_dir"/*.so.* "$r/lib/x86_64-linux-gnu"/*.so.*; do
    [ -e "$lib" ] || continue
    name="$(basename "$lib")"
    [[ "$name" =~ \.so\.[0-9]+$ ]] || continue
    case "$name" in
      libOpenCL.so.*|libcfitsio.so.*|libclFFT.so.*|libpkgconf.so.*) ln -sf "$lib" "$prefix/lib/$name" ;;
      *) is_system_soname "$name" || ln -sf "$lib" "$prefix/lib/$name" ;;
    esac
  done
  say "unpacked $(ls "$debs"/*.deb | wc -l) packages into $prefix (libraries linked: $(ls "$prefix/lib" | tr '\n' ' '))"
}

environment() {
  local r="$prefix/root"
  export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$prefix/pkgconfig"
  export PKG_CONFIG_LIBDIR="$prefix/pkgconfig"
  export CMAKE_PREFIX_PATH="$r/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  cmake_args=(-DOpenCL_INCLUDE_DIR="$r/usr/include" -DOpenCL_LIBRARY="$r/$arch_dir/libOpenCL.so"
              -DclFFT_DIR="$r/$arch_dir/cmake/clFFT" -DCMAKE_C_FLAGS="-isystem $r/usr/include")
  if ! command -v pkg-config >/dev/null; then
    cmake_args+=(-DPKG_CONFIG_EXECUTABLE="$r/usr/bin/pkgconf")
  fi
  if ! command -v cmake >/dev/null && [ -x "$r/usr/bin/cmake" ]; then
    export PATH="$r/usr/bin:$PATH"
    export CMAKE_ROOT="$r/usr/share/cmake-$(ls "$r/usr/share" | sed -n 's/^cmake-//p' | head -1)"
  fi
  command -v cmake >/dev/null || die "cmake is not installed and the .debs have none: rerun 'prepare.sh download --with-cmake'"
  command -v cc >/dev/null || command -v gcc >/dev/null || die "no C compiler (cc/gcc) on this machine"
}

# ---- the OpenCL device

devices_json() { "$root/build-gpu/clred" devices --json 2>/dev/null || echo '{"devices": []}'; }

nvidia_index() {
  devices_json | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["type"] == "gpu" and "nvidia" in (d["platform"] + d["vendor"]).lower():
        print(d["index"]); break' 2>/dev/null || true
}

cpu_index() {
  devices_json | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["type"] == "cpu":
        print(d["index"]); break' 2>/dev/null || true
}

find_nvidia_opencl() {
  local p
  p="$(ldconfig -p 2>/dev/null | awk '$1 == "libnvidia-opencl.so.1" {print $NF; exit}')"
  [ -n "$p" ] && { echo "$p"; return; }
  for p in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib \
           /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu/nvidia/current; do
    [ -e "$p/libnvidia-opencl.so.1" ] && { echo "$p/libnvidia-opencl.so.1"; return; }
  done
}

# Registers NVIDIA's OpenCL with the ICD loader: /etc/OpenCL/vendors when it
# can be written, else a vendors folder in the prefix named by OCL_ICD_VENDORS.
register_nvidia() {
  local lib entry
  lib="$(find_nvidia_opencl)"
  if [ -z "$lib" ]; then
    say "NVIDIA's OpenCL driver (libnvidia-opencl.so.1) is NOT on this machine: the GPU cannot be used"
    say "through OpenCL. Install the driver's OpenCL part (or mount it) and run again."
    return 1
  fi
  # The bare name works when the loader's search path finds it; else the full path.
  if ldconfig -p 2>/dev/null | awk '$1 == "libnvidia-opencl.so.1" {f = 1} END {exit !f}'; then
    entry="libnvidia-opencl.so.1"
  else
    entry="$lib"
  fi
  if mkdir -p /etc/OpenCL/vendors 2>/dev/null && [ -w /etc/OpenCL/vendors ]; then
    echo "$entry" >/etc/OpenCL/vendors/nvidia.icd
    say "registered $entry in /etc/OpenCL/vendors/nvidia.icd"
  else
    mkdir -p "$prefix/vendors"
    cp /etc/OpenCL/vendors/*.icd "$prefix/vendors/" 2>/dev/null || true
    echo "$entry" >"$prefix/vendors/nvidia.icd"
    export OCL_ICD_VENDORS="$prefix/vendors"
    say "registered $entry through OCL_ICD_VENDORS=$OCL_ICD_VENDORS (/etc is not writable)"
  fi
}

has_nvidia_gpu() {
  [ -e /dev/nvidia0 ] || [ -e /dev/nvidiactl ] || { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }
}

run() {
  local bench_args=() no_gpu=0 quick=0 skip_tests=0 skip_bench=0 system=0 out="${OUT:-$root/bench/results}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --no-gpu) no_gpu=1 ;;
      --quick) quick=1 ;;
      --skip-tests) skip_tests=1 ;;
      --skip-bench) skip_bench=1 ;;
      --system) system=1 ;;
      --out) out="$2"; shift ;;
      --) shift; bench_args=("$@"); break ;;
      *) die "run: unknown option '$1'" ;;
    esac
    shift
  done
  cmake_args=()
  if [ "$system" = 0 ]; then
    unpack
    environment
  fi
  # The project's test configuration; warnings are not fatal because the GPU
  # machine's compiler is not the one the project polices them with.
  say "building in $root/build-gpu (RelWithDebInfo)"
  cmake -S "$root" -B "$root/build-gpu" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" >/dev/null
  cmake --build "$root/build-gpu" -j"$(nproc)" >/dev/null
  say "OpenCL devices before registering anything:"
  "$root/build-gpu/clred" devices >&2 || say "(no OpenCL platform yet)"

  local device="" kind="gpu"
  if [ "$no_gpu" = 1 ]; then
    say "--no-gpu: using the CPU OpenCL device"
    kind="cpu"
  elif ! has_nvidia_gpu; then
    say "no NVIDIA GPU on this machine (no /dev/nvidia*, no nvidia-smi): using the CPU OpenCL device (POCL)"
    kind="cpu"
  else
    device="$(nvidia_index)"
    if [ -z "$device" ]; then
      say "an NVIDIA GPU is present but no NVIDIA OpenCL platform is listed: registering the driver"
      register_nvidia || die "cannot use the GPU (see above)"
      "$root/build-gpu/clred" devices >&2 || true
      device="$(nvidia_index)"
      [ -n "$device" ] || die "NVIDIA's OpenCL is registered but still no NVIDIA device is listed (driver/loader mismatch?)"
    fi
  fi
  if [ "$kind" = cpu ]; then
    device="$(cpu_index)"
    [ -n "$device" ] || die "no CPU OpenCL device either (install POCL: pocl-opencl-icd) — nothing to run on"
  fi
  export CLRED_DEVICE="$device"
  say "device $CLRED_DEVICE: $("$root/build-gpu/clred" devices --json | python3 -c "
import json, sys
d = [x for x in json.load(sys.stdin)['devices'] if x['index'] == $device][0]
print(d['name'], '(' + d['type'] + ', ' + d['platform'] + ')')")"
  mkdir -p "$out"

  if [ "$skip_tests" = 0 ]; then
    say "running the test suite on device $CLRED_DEVICE"
    set +e
    ctest --test-dir "$root/build-gpu" --output-on-failure -j"$(nproc)" 2>&1 | tee "$out/ctest-$kind.log"
    local rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] && say "test suite passed on device $CLRED_DEVICE" || say "test suite FAILED on device $CLRED_DEVICE (exit $rc; log in $out/ctest-$kind.log)"
  fi
  if [ "$skip_bench" = 0 ]; then
    local args=(--device "$CLRED_DEVICE" --results "$out" --work "$root/build-gpu/bench-work")
    # bench/run configures its own Release build: the same prefix paths.
    export CLRED_BENCH_CMAKE_ARGS="${cmake_args[*]:-}"
    [ "$quick" = 1 ] && args+=(--quick)
    # No registry on the GPU machine: the peers run where PyPI is (bench/run).
    bench/setup_peers.sh --check >/dev/null 2>&1 || args+=(--no-peers)
    args+=("${bench_args[@]}")
    say "benchmarks: bench/run ${args[*]}"
    "$root/bench/run" "${args[@]}"
    # The night in one command, with its trace and transfer counts (on a GPU:
    # do uploads overlap kernels, and how far is the night from its I/O?).
    local night_size=2048
    [ "$quick" = 1 ] && night_size=1024
    say "night: bench/night/run $out/night-$kind --size $night_size --copying"
    CLRED_DEVICE="$CLRED_DEVICE" "$root/bench/night/run" "$out/night-$kind" --size "$night_size" --copying ||
      say "bench/night/run failed (see above)"
    diff_timing "$out" "$kind" "$([ "$quick" = 1 ] && echo 2048 || echo 4096)"
  fi
}

# Issue 10's device check: a simulated pair subtracted by each method and its
# candidates written, the whole `clred subtract` command timed after a
# warm-up run that compiles its kernels (aim on a GPU at 4096^2: < 0.5 s).
# The true PSFs are given, as bench/diff/run.py gives them to every method;
# no peers here (they need PyPI): bench/diff/run.py compares them elsewhere.
diff_timing() {
  local out="$1" kind="$2" size="$3" work="$root/build-gpu/diff-work" bin="$root/build-gpu/clred"
  local report="$out/diff-timing-$kind-$size.md"
  say "difference imaging: a ${size}^2 pair, each method timed after a warm-up (report: $report)"
  mkdir -p "$work"
  if ! "$bin" simulate-pair -o "$work/pair" --size "${size}x${size}" --ntransients 200 --overwrite >/dev/null; then
    say "simulate-pair failed (see above)"
    return 0
  fi
  {
    echo "# clred subtract, ${size}^2 simulated pair, device $CLRED_DEVICE ($kind)"
    echo
    echo "Command per method (after one untimed warm-up): \`clred subtract new.fits ref.fits --method M --new-psf new_psf.fits --ref-psf ref_psf.fits --candidates cand.csv --json --overwrite\`"
    echo
    echo "| method | wall s (3 runs) | candidates |"
    echo "|---|---|---|"
  } >"$report"
  local m
  for m in zogy al; do
    local args=("$work/pair/new.fits" "$work/pair/ref.fits" -o "$work/diff-$m.fits" --method "$m"
      --new-psf "$work/pair/new_psf.fits" --ref-psf "$work/pair/ref_psf.fits"
      --candidates "$work/cand-$m.csv" --json --overwrite)
    if ! "$bin" subtract "${args[@]}" >/dev/null; then
      say "clred subtract --method $m failed (see above)"
      echo "| $m | failed | – |" >>"$report"
      continue
    fi
    local times="" r t0 t1
    for r in 1 2 3; do
      t0=$(date +%s.%N)
      "$bin" subtract "${args[@]}" >/dev/null
      t1=$(date +%s.%N)
      times="$times $(python3 -c "print(f'{$t1 - $t0:.3f}')")"
    done
    echo "| $m |$times | $(($(wc -l <"$work/cand-$m.csv") - 1)) |" >>"$report"
  done
  cat "$report" >&2
}

case "${1:-}" in
  download) shift; download "$@" ;;
  run) shift; (cd "$root" && run "$@") ;;
  -h|--help|"") awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0" ;;
  *) die "unknown command '$1' (download or run)" ;;
esac
