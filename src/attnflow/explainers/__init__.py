"""Explain one input end to end: load, capture, run the methods, return an Explanation.

One module per kind of input: :mod:`.text` (a text, or a decoder's generated
answer through :mod:`attnflow.generation`), :mod:`.image` (an image for a ViT-style
classifier) and :mod:`.seq2seq` (a source and a target text for an
encoder–decoder model). The result records they return live in
:mod:`attnflow.explanation`.
"""
