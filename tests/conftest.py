"""Shared test settings.

The unit tests run tiny networks on tiny tensors, where intra-op threads cost more than they save;
on a machine whose cores are busy with another process (a chapter executing, a training run),
two threads per process were measured up to 100 times slower than one. So the whole session runs
on one thread; the notebooks (separate kernels) are not affected.
"""
import torch

torch.set_num_threads(1)
