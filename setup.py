"""Install equiforce (Python package in python/equiforce, native ops in plugin/)."""
import os
import re
import subprocess

from setuptools import find_packages, setup


# Native neighbour-list op (plugin/), compiled into python/equiforce/_ops*.so and loaded by equiforce.ops.
# It builds against the torch already installed, hence `pip install --no-build-isolation -e .`.
# CUDA kernels: EQUIFORCE_BUILD_CUDA=1 forces them, =0 skips them; unset ("auto"), they are built when torch
# is a CUDA build, a GPU is visible and the toolkit's nvcc has the same major version as torch.version.cuda.
def _nvcc_major(cuda_home):
    try:
        text = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"release (\d+)\.", text)
    return match.group(1) if match else None


def _build_cuda(torch, cuda_home):
    flag = os.environ.get("EQUIFORCE_BUILD_CUDA", "auto").strip().lower()
    if flag in ("0", "off", "false", "no"):
        return False
    usable = torch.version.cuda is not None and cuda_home is not None
    if flag in ("1", "on", "true", "yes"):
        if not usable:
            raise RuntimeError("EQUIFORCE_BUILD_CUDA=1 needs a CUDA build of torch and a CUDA toolkit (CUDA_HOME)")
        return True
    if not usable or not torch.cuda.is_available():
        return False
    major = _nvcc_major(cuda_home)
    if major != torch.version.cuda.split(".")[0]:
        print(f"equiforce: skipping CUDA kernels: nvcc major version {major} does not match torch CUDA "
              f"{torch.version.cuda} (set EQUIFORCE_BUILD_CUDA=1 to force)")
        return False
    return True


def _native_extensions():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as error:
        raise RuntimeError("equiforce compiles a native op against the installed torch: install torch first, "
                           "then `pip install --no-build-isolation -e .`") from error
    sources = ["plugin/ops.cpp", "plugin/neighbors_cpu.cpp", "plugin/convolution_cpu.cpp", "plugin/activations.cpp",
               "plugin/radial_spline.cpp"]
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"]
    if _build_cuda(torch, CUDA_HOME):
        print("equiforce: building the neighbour-list op with CUDA kernels")
        extension = CUDAExtension(
            "equiforce._ops",
            sources + ["plugin/neighbors_cuda.cu"],
            define_macros=[("EQUIFORCE_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo", "--fmad=false"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        print("equiforce: building the neighbour-list op for the CPU only")
        extension = CppExtension("equiforce._ops", sources, extra_compile_args={"cxx": cxx},
                                 extra_link_args=["-fopenmp"])
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


_ext_modules, _cmdclass = _native_extensions()

setup(
    name="equiforce",
    version="0.1.0",
    description="E(3)-equivariant machine-learned potentials for OpenMM",
    package_dir={"": "python"},
    packages=find_packages("python"),
    package_data={"equiforce": ["models/*.pt", "models/*.json"]},
    python_requires=">=3.10",
    install_requires=["torch", "e3nn", "numpy", "openmm", "openmmtorch", "ase", "tqdm", "pyyaml"],
    entry_points={
        "console_scripts": ["equiforce = equiforce.cli:main"],
        "openmmml.potentials": [
            "equiforce = equiforce.openmm.mlpotential:EquiforcePotentialImplFactory",
            "equiforce-water-gfn2 = equiforce.openmm.mlpotential:ShippedPotentialImplFactory",
        ],
    },
    ext_modules=_ext_modules,
    cmdclass=_cmdclass,
)
