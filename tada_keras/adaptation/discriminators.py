"""Fully-convolutional (PatchGAN) domain discriminators for features and outputs."""

from __future__ import annotations

import keras

from tada_keras.layers import BatchNormalization


@keras.saving.register_keras_serializable(package="tada_keras")
class PatchDiscriminator(keras.Model):
    """Domain discriminator with one logit per patch (no sigmoid: use BCE-with-logits).

    The defaults are AdaptSegNet's ``FCDiscriminator``: 5 convolutions, kernel 4, stride
    2, widths 64-128-256-512-1, LeakyReLU(0.2) after all but the last, no batch norm.
    The paper's appendix stabilisers are options: a DCGAN-style batch norm after every
    hidden convolution (``batchnorm``; the paper uses 2 layers for faces, 5 for indoor
    scenes) and Gaussian noise on the input and on every hidden activation
    (``noise_stddev``, training only). New weights use He initialisation (appendix A.1).
    Inputs smaller than the receptive field are fine: "same" padding keeps at least one
    patch, and for even sizes it pads exactly like AdaptSegNet's ``padding=1``.

    Args:
        input_channels: channels of the features (or outputs) it discriminates.
        num_layers: number of convolutions, the last one producing the logit map.
        filters: width of the first convolution; it doubles per layer.
        max_filters: cap of the width (AdaptSegNet: 512).
        kernel_size: convolution kernel size.
        strides: convolution stride.
        batchnorm: batch norm after every hidden convolution (DCGAN-style).
        noise_stddev: std of the Gaussian noise on the input and hidden activations.
        negative_slope: LeakyReLU slope.

    Example:
    ```python
    d = PatchDiscriminator(input_channels=3)
    logits = d(np.zeros((2, 64, 64, 3), "float32"))   # (2, 2, 2, 1)
    ```

    Reference:
        Tsai et al., "Learning to Adapt Structured Output Space for Semantic
        Segmentation", CVPR 2018 (wasidennis/AdaptSegNet ``model/discriminator.py``);
        Radford et al., "Unsupervised Representation Learning with Deep Convolutional
        GANs" (DCGAN), 2016; Isola et al., "Image-to-Image Translation with Conditional
        Adversarial Networks" (PatchGAN), CVPR 2017.
    """

    def __init__(self, input_channels: int, num_layers: int = 5, filters: int = 64,
                 max_filters: int = 512, kernel_size: int = 4, strides: int = 2,
                 batchnorm: bool = False, noise_stddev: float = 0.0,
                 negative_slope: float = 0.2, **kwargs):
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        # === Functional Model ===
        inputs = keras.Input((None, None, int(input_channels)), name="features")
        x = inputs
        for i in range(1, num_layers + 1):
            if noise_stddev:
                x = keras.layers.GaussianNoise(noise_stddev, name=f"noise{i}")(x)
            last = i == num_layers
            width = 1 if last else min(filters * 2 ** (i - 1), max_filters)
            x = keras.layers.Conv2D(
                width, kernel_size, strides=strides, padding="same",
                use_bias=last or not batchnorm, kernel_initializer="he_normal",
                dtype="float32", name="logits" if last else f"conv{i}")(x)
            if not last:
                if batchnorm:
                    x = BatchNormalization(name=f"bn{i}")(x)
                x = keras.layers.LeakyReLU(negative_slope, name=f"lrelu{i}")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        # === Config ===
        self.input_channels = int(input_channels)
        self.num_layers = num_layers
        self.filters = filters
        self.max_filters = max_filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.batchnorm = batchnorm
        self.noise_stddev = noise_stddev
        self.negative_slope = negative_slope

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_channels": self.input_channels,
            "num_layers": self.num_layers,
            "filters": self.filters,
            "max_filters": self.max_filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "batchnorm": self.batchnorm,
            "noise_stddev": self.noise_stddev,
            "negative_slope": self.negative_slope,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
