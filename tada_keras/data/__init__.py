"""tf.data: TFDS examples -> mixed-domain model batches (see ``pipeline``)."""

from tada_keras.data.pipeline import (
                                      DataSpec,
                                      PseudoViews,
                                      eval_dataset,
                                      load_split,
                                      mixed_train_dataset,
                                      prepare_builder,
                                      prepare_example,
)

__all__ = ["DataSpec", "PseudoViews", "eval_dataset", "load_split", "mixed_train_dataset",
           "prepare_builder", "prepare_example"]
