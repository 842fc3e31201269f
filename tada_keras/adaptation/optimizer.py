"""AdversarialOptimizer: the network's and the discriminators' optimizers as one.

Keras trainers hold one optimizer, and on JAX its variables are the only optimizer state
threaded through the compiled step. Wrapping both optimizers in one (as Keras'
``LossScaleOptimizer`` wraps its inner optimizer) keeps every backend's ``fit``, the
JAX state, and ``ResumableCheckpoint`` (which saves ``model.optimizer.variables``)
working unchanged: the discriminators' optimizer state is simply part of it.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tada_keras")
class AdversarialOptimizer(keras.optimizers.Optimizer):
    """Applies ``network`` to the network's variables, ``discriminator`` to the rest.

    Both update in the same step, after one backward pass (AdaptSegNet's order: all
    optimizers step at the end of the iteration). ``iterations`` and ``learning_rate``
    are the network optimizer's.

    Args:
        network: optimizer of the main network (paper: Adam with a lower rate).
        discriminator: optimizer of the discriminators (paper: SGD).
        discriminator_variables: the discriminators' trainable variables; every other
            variable the optimizer is built with belongs to the network.

    Example:
    ```python
    opt = AdversarialOptimizer(keras.optimizers.Adam(1e-4),
                               keras.optimizers.SGD(1e-2, momentum=0.9),
                               model.adaptation.trainable_variables)
    model.compile(optimizer=opt)
    ```
    """

    def __init__(self, network, discriminator, discriminator_variables=(), name=None,
                 **kwargs):
        super().__init__(learning_rate=0.0, name=name or "adversarial_optimizer", **kwargs)
        self.network = keras.optimizers.get(network)
        self.discriminator = keras.optimizers.get(discriminator)
        # Identity, not equality: a variable of either player is a distinct object.
        self._discriminator_ids = {id(v) for v in discriminator_variables}

    def build(self, var_list):
        self._network_index = [i for i, v in enumerate(var_list)
                               if id(v) not in self._discriminator_ids]
        self._discriminator_index = [i for i, v in enumerate(var_list)
                                     if id(v) in self._discriminator_ids]
        if not self._discriminator_index:
            raise ValueError("AdversarialOptimizer: none of the variables belongs to the "
                             "discriminators; attach them before compiling.")
        self.network.build([var_list[i] for i in self._network_index])
        self.discriminator.build([var_list[i] for i in self._discriminator_index])
        super().build(var_list)

    @property
    def variables(self):
        return self._variables[:] + self.network.variables + self.discriminator.variables

    @property
    def iterations(self):
        return self.network.iterations

    @property
    def learning_rate(self):
        return self.network.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.network.learning_rate = value

    def _split(self, values):
        return ([values[i] for i in self._network_index],
                [values[i] for i in self._discriminator_index])

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        variables = list(trainable_variables or self._trainable_variables)
        grads = list(grads)
        g_net, g_disc = self._split(grads)
        v_net, v_disc = self._split(variables)
        self.network.apply(g_net, v_net)
        self.discriminator.apply(g_disc, v_disc)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        own = len(self._variables)
        n_net = len(self.network.variables)
        optimizer_variables = list(optimizer_variables)
        net_state = optimizer_variables[own:own + n_net]
        disc_state = optimizer_variables[own + n_net:]
        g_net, g_disc = self._split(list(grads))
        v_net, v_disc = self._split(list(trainable_variables))
        v_net, net_state = self.network.stateless_apply(net_state, g_net, v_net)
        v_disc, disc_state = self.discriminator.stateless_apply(disc_state, g_disc, v_disc)
        new_variables = list(trainable_variables)
        for i, v in zip(self._network_index, v_net):
            new_variables[i] = v
        for i, v in zip(self._discriminator_index, v_disc):
            new_variables[i] = v
        return new_variables, optimizer_variables[:own] + list(net_state) + list(disc_state)

    def finalize_variable_values(self, var_list):
        v_net, v_disc = self._split(list(var_list))
        self.network.finalize_variable_values(v_net)
        self.discriminator.finalize_variable_values(v_disc)

    def get_config(self):
        # The variable partition is not serialisable: a deserialised optimizer needs
        # `discriminator_variables` again (tada-keras never saves it: see run.py).
        return {
            "name": self.name,
            "network": keras.optimizers.serialize(self.network),
            "discriminator": keras.optimizers.serialize(self.discriminator),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        return cls(keras.optimizers.deserialize(config.pop("network")),
                   keras.optimizers.deserialize(config.pop("discriminator")), **config)
