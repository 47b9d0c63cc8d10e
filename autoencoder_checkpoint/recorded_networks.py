"""Which networks a BL-AE checkpoint holds, and building them: encoder, decoder, binarizer.

They are read from its ``hyper_parameters``: ``encoder``/``decoder``/``binarizer`` as
``{class_path, init_args}`` (LightningCLI records them so) or as module objects (a BL-AE built in
Python). A checkpoint that records neither (made before ``BinaryLatentAutoencoder`` saved its
networks) is read with the ``config.yaml`` that ``train.py`` wrote into its run folder
(``<run>/config.yaml`` beside ``<run>/checkpoints/*.ckpt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeGuard

import yaml
from jsonargparse import ArgumentParser
from torch import nn

from autoencoder_checkpoint.reader import NotAnAutoencoderCheckpointError

NETWORK_ARGUMENTS = ("encoder", "decoder", "binarizer")
"""BL-AE init arguments that are networks."""


def _is_class_config(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and "class_path" in value


def _is_network(value: Any) -> bool:
    return _is_class_config(value) or isinstance(value, nn.Module)


def _run_config_files(path: Path) -> list[Path]:
    """Where train.py leaves the run's config: ``<run>/config.yaml`` for ``<run>/checkpoints/x.ckpt``."""
    return [folder / "config.yaml" for folder in (path.parent.parent, path.parent)]


def recorded_networks(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``{encoder, decoder, binarizer}``, each a ``{class_path, init_args}`` config, a module, or None.

    From the hyper-parameters (configs under LightningCLI, module objects when the BL-AE was built
    in Python), else from the run's ``config.yaml`` (checkpoints that recorded no networks).
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    if _is_network(hparams.get("encoder")) and _is_network(hparams.get("decoder")):
        return _with_image_channels({name: hparams.get(name) for name in NETWORK_ARGUMENTS}, hparams.get("channels"))
    for config_file in _run_config_files(Path(path).expanduser()):
        if not config_file.is_file():
            continue
        model = (yaml.safe_load(config_file.read_text()) or {}).get("model") or {}
        recorded_class = hparams.get("_class_path")
        if recorded_class is not None and model.get("class_path") not in (None, recorded_class):
            continue  # the config of another run that shares the folder
        init_args = model.get("init_args") or {}
        if _is_class_config(init_args.get("encoder")) and _is_class_config(init_args.get("decoder")):
            return _with_image_channels({name: init_args.get(name) for name in NETWORK_ARGUMENTS}, hparams.get("channels"))
    raise NotAnAutoencoderCheckpointError(
        f"{str(path)!r} does not record its encoder/decoder: neither its hyper_parameters nor a run config.yaml"
        f" ({', '.join(str(f) for f in _run_config_files(Path(path).expanduser()))}) name them"
    )


def _with_image_channels(networks: dict[str, Any], channels: int | None) -> dict[str, Any]:
    """The networks' image channels follow the data (a CLI link), so a recorded encoder/decoder config may
    leave them out: they are the model's recorded ``channels``."""
    if channels is None:
        return networks
    filled = dict(networks)
    for name in ("encoder", "decoder"):
        network = networks.get(name)
        if _is_class_config(network) and "image_channels" not in (network.get("init_args") or {}):
            filled[name] = {**network, "init_args": {**(network.get("init_args") or {}), "image_channels": int(channels)}}
    return filled


def instantiate_network(network: dict[str, Any] | nn.Module) -> nn.Module:
    """A ``{class_path, init_args}`` config -> module, parsed like LightningCLI does; a module is returned as is."""
    if isinstance(network, nn.Module):
        return network
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "net", fail_untyped=False)
    return parser.instantiate_classes(parser.parse_object({"net": network})).net
