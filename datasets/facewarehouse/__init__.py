"""FaceWarehouse. Importing this package registers the `facewarehouse` builder."""

from . import facewarehouse_dataset_builder

Builder = facewarehouse_dataset_builder.Builder
