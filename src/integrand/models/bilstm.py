"""The toxicity BiLSTM (``integrand.text.toxicity``): one bidirectional LSTM block, no attention, no MLP inside it."""

from .family import Family

FAMILY = Family(name="bilstm", block_types=("LSTM",), embedding="embedding", model_types=("ToxicityBiLSTM",))
