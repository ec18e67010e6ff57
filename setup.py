"""Install equiforce (Python package in python/equiforce, native ops in plugin/)."""
from setuptools import find_packages, setup

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
        ],
    },
)
