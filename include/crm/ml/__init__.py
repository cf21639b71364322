"""Customer models: probabilistic lifetime value (``crm.ml.clv_probabilistic``)."""
