"""lmbook: the companion package of LM Book.

One module per idea, in the order the book builds them:

- ``lmbook.env``   profiles, seeding, device choice (chapter 1)
- ``lmbook.data``  datasets with checksums and the standard splits (chapter 1)
- ``lmbook.ngram`` n-gram language models with smoothing (chapter 1)
- ``lmbook.plot``  the book's plotting style
"""

__version__ = "0.1.0"
