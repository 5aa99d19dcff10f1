"""The authors' released checkpoints (github.com/lillian039/ELF, branch pytorch_elf) in and out of elfctl.

One concept per module: ``source`` (hub id, file or folder -> a local ``checkpoint_<step>`` file), ``reading``
(the safe ``torch.load(weights_only=True)`` read and its top-level checks), ``keys`` (their parameter names <->
ours), ``architecture`` (depth, widths and token counts from the tensors), ``recipe`` (the matching shipped
recipe with the authors' sampling settings), ``importer`` (an ordinary elfctl run directory) and ``exporter``
(a ``checkpoint_<step>`` file their loader accepts).
"""
