"""lmbook: the companion package of LM Book.

One module per idea, in the order the book builds them:

- ``lmbook.env``        profiles, seeding, device choice (chapter 1)
- ``lmbook.data``       datasets with checksums and the standard splits (chapter 1)
- ``lmbook.ngram``      n-gram language models with smoothing (chapter 1)
- ``lmbook.batching``   vocabularies and (context, target) minibatches (chapter 2)
- ``lmbook.mlp``        the neural bigram and the MLP language model (chapter 2)
- ``lmbook.train``      a small training loop with evaluation and early stopping (chapter 2)
- ``lmbook.rnn``        RNN, LSTM and GRU from scratch, the character-level recurrent LM (chapter 3)
- ``lmbook.attention``  scaled dot-product, multi-head and additive attention, positions (chapter 4)
- ``lmbook.dates``      the date-rewriting task, generated in code (chapter 4)
- ``lmbook.seq2seq``    the LSTM encoder-decoder, with or without attention (chapter 4)
- ``lmbook.gpt``        GPT: the Transformer decoder, parameter and FLOP accounting (chapter 5)
- ``lmbook.hf``         GPT-2 weights to and from Hugging Face ``transformers`` (chapter 5)
- ``lmbook.bpe``        byte-level BPE tokenization: fast training, GPT-2's files (chapter 6)
- ``lmbook.tokens``     memory-mapped token files and GPU batches (chapter 7)
- ``lmbook.checkpoint`` crash-safe safetensors checkpoints (chapter 7)
- ``lmbook.trainer``    the GPU training recipe and its command line, ``lmbook-train`` (chapter 7)
- ``lmbook.generate``   decoding rules, the KV cache, beam search, speculative decoding (chapter 8)
- ``lmbook.evaluate``   held-out likelihood with intervals, calibration, multiple choice (chapter 8)
- ``lmbook.llama``      the Llama-style decoder: RMSNorm, SwiGLU, rotary positions, grouped-query attention (chapter 9)
- ``lmbook.scaling``    scaling laws: Hoffmann et al.'s fits, compute-optimal sizes, one training run (chapter 9)
- ``lmbook.finetune``   classification heads, chat templates, LoRA and DPO (chapter 10)
- ``lmbook.instructions`` instruction and preference data made by code, with checkers (chapter 10)
- ``lmbook.corpus``     normalisation, mojibake, language ID, quality filters, PII redaction (chapter 11)
- ``lmbook.dedup``      exact and MinHash/LSH deduplication, n-gram overlap for decontamination (chapter 11)
- ``lmbook.memorization`` canary exposure and verbatim regurgitation (chapter 11)
- ``lmbook.plot``       the book's plotting style
"""

__version__ = "0.1.0"
