"""lmbook: the companion package of LM Book.

One module per idea, in the order the book builds them:

- ``lmbook.env``   profiles, seeding, device choice (chapter 1)
- ``lmbook.data``  datasets with checksums and the standard splits (chapter 1)
- ``lmbook.ngram`` n-gram language models with smoothing (chapter 1)
- ``lmbook.batching`` vocabularies and (context, target) minibatches (chapter 2)
- ``lmbook.mlp``   the neural bigram and the MLP language model (chapter 2)
- ``lmbook.train`` a small training loop with evaluation and early stopping (chapter 2)
- ``lmbook.plot``  the book's plotting style
"""

__version__ = "0.1.0"
