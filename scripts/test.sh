#!/usr/bin/env bash
# Builds from clean with warnings as errors and runs every test on the default
# OpenCL device (POCL on a machine without a GPU), then builds the Python
# package with pip in a virtual environment (build/pyenv) and runs its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLRED_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"

# ---- the Python package (python/), as a user installs it
python3 -m venv build/pyenv
export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
build/pyenv/bin/pip install -q --disable-pip-version-check ./python pytest astropy photutils "dask[distributed]" fastavro
set +e
CLRED_BIN="$PWD/build/clred" build/pyenv/bin/python -m pytest -q python/tests
rc=$?
set -e
# pytest's 5 means it collected no test: the suite was not found, a failure here.
if [ "$rc" -eq 5 ]; then
  echo "python tests: pytest collected no test" >&2
  exit 1
fi
exit "$rc"
