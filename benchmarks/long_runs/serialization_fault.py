"""Minimal reproducer of the upstream fault: deserializing any System that holds an openmmtorch TorchForce.

    python benchmarks/long_runs/serialization_fault.py

With openmm 8.6.1 and openmmtorch 1.5 (the pinned PyPI wheels) the child process below dies with SIGSEGV in
``XmlSerializer.deserialize``; a trivial TorchScript module (E = Σ x²) is enough, so the fault is not in equiforce's
model. gdb (``gdb -batch -ex run -ex bt --args python child.py``, CHILD below in child.py) shows, on 2026-12-06:

    #0  __strcmp_evex ()
    #1  OpenMM::SerializationNode::findPropertyValue(std::string const&, bool) const ()   libOpenMM.so
    #2  OpenMM::SerializationNode::getStringProperty(std::string const&) const ()          libOpenMM.so
    #3  OpenMM::TorchForceProxy::deserialize(OpenMM::SerializationNode const&) const ()     libOpenMMTorch.so
    #4  OpenMM::SystemProxy::deserialize(OpenMM::SerializationNode const&) const ()         libOpenMM.so
    #5  OpenMM::XmlSerializer::deserializeStream(std::istream&) ()                           libOpenMM.so

Serializing works (the XML holds the model as ``encodedFileContents``); reading it back crashes inside the
TorchForce proxy of the openmmtorch wheel, compiled against other OpenMM headers than the 8.6.1 library it runs
with. equiforce's way round it: ``equiforce.openmm.save_system`` / ``load_system``.
"""
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import torch, openmm, openmmtorch
class Square(torch.nn.Module):
    def forward(self, positions):
        return (positions ** 2).sum()
system = openmm.System()
system.addParticle(1.0)
system.addForce(openmmtorch.TorchForce(torch.jit.script(Square())))
xml = openmm.XmlSerializer.serialize(system)
print("serialized", len(xml), "characters", flush=True)
openmm.XmlSerializer.deserialize(xml)
print("deserialized", flush=True)
'''


def run() -> int:
    """Exit status of the child: negative is the signal that killed it (-11: SIGSEGV)."""
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "child.py")  # TorchScript needs the module's source in a file
        with open(script, "w") as handle:
            handle.write(CHILD)
        done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300)
    print(done.stdout.strip())
    return done.returncode


if __name__ == "__main__":
    status = run()
    print(f"child exit status {status}" + (" (SIGSEGV: the upstream fault is present)" if status == -11 else ""))
