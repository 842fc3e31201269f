"""SfSNet synthetic faces (SfSsyn); importing this package registers `sfsnet_synthetic`."""

from . import sfsnet_synthetic_dataset_builder

Builder = sfsnet_synthetic_dataset_builder.Builder
