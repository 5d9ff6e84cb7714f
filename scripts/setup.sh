#!/usr/bin/env bash
# Installs what clred needs to build and run on Debian 12 (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config git \
  ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 pocl-opencl-icd clinfo \
  libcfitsio-dev libpng-dev libclfft-dev libvkfft-dev libinih-dev wcslib-dev libavro-dev zlib1g-dev \
  python3-venv python3-dev >/dev/null
# clang and its compiler-rt (libFuzzer, sanitizers) for scripts/sanitize.sh.
apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
echo "setup: build tools, OpenCL (ICD loader + POCL), cfitsio, libpng, clFFT, VkFFT, libinih, wcslib, Avro C, zlib, clang and Python (venv, headers) installed"
