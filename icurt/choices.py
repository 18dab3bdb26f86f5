"""The names a setting may take, kept below the config so the config imports no stage package:
the config checks a value against them, and the stage that uses the setting reads them from here."""

ACTIVATIONS = ("relu", "tanh")                      # [tune_model].lstm_activations, fc_activations
OPTIMIZERS = ("sgd", "rmsprop", "adam")             # [tune_model].optimizers, [tune_attack].optimizers
READOUTS = ("final_states", "last_step")            # [model].readout: see icurt/model/lstm.py
OUTPUTS = ("logits", "softmax")                     # [model].output: what the training loss is applied to
PRECISIONS = ("fp32", "bf16", "fp16")               # [train].precision: see icurt/model/precision.py
# [tune_attack].objective: the quality scores of icurt/attack/objectives.py
OBJECTIVES = ("sparsity", "max_num_nonzero_perts", "sparse_small", "sparse_small_max")
