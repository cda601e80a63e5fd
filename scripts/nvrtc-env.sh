# Source me: puts NVRTC from the `nvidia-cuda-nvrtc-cu12` wheel on the loader path for cudarc.
#
#   pip install nvidia-cuda-nvrtc-cu12 && source scripts/nvrtc-env.sh
#
# The wheel ships lib/libnvrtc.so.12 (+ libnvrtc-builtins.so.12.x, which NVRTC dlopens by soname).
# cudarc's dynamic loader tries libnvrtc.so, then versioned names including libnvrtc.so.12, so
# adding the wheel's lib/ directory to LD_LIBRARY_PATH is enough: no symlink is needed.
_facelock_nvrtc_lib="$(python3 -c 'import os, nvidia.cuda_nvrtc as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)"
if [ -n "$_facelock_nvrtc_lib" ] && [ -e "$_facelock_nvrtc_lib/libnvrtc.so.12" ]; then
    export LD_LIBRARY_PATH="$_facelock_nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
    echo "nvrtc-env.sh: nvidia-cuda-nvrtc-cu12 is not installed (pip install nvidia-cuda-nvrtc-cu12)" >&2
fi
unset _facelock_nvrtc_lib
