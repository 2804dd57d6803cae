"""Command line: fit a model on a CSV file, predict another, describe a saved model.

::

    llmregressor fit data.csv --target price --out model_dir [--sft_epochs 3 ...]
    llmregressor predict model_dir data.csv --out predictions.csv [--interval 0.9 [--raw-interval]]
    llmregressor info model_dir

Every :class:`~llmregressor.LLMRegressor` parameter is an option of ``fit`` (a backbone that
a model folder cannot hold yet, ``--model mlp-decoder``, is refused); its value is
parsed into the type the parameter takes (int, float, bool, None, str, comma-separated
lists), read from the constructor's type hints. Progress goes to stderr, results to
stdout or ``--out``. Output paths (``--out``, ``--checkpoint_dir``) are checked before
anything is read or trained. A user error (unreadable file, missing column, bad value,
unwritable output, model folder of another format version or that fails its checks, a
``checkpoint_dir`` in use by another fit) prints one message on stderr and exits with
code 2.
"""

from __future__ import annotations

import argparse
import collections.abc
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._locks import CheckpointInUseError
from ._training import TrainingDivergedError
from ._version import __version__
from .backbone_protocol import backbone_for
from .estimator import LLMRegressor
from .params import PARAMETERS_BY_NAME, validate_params
from .persistence import FORMAT_VERSION, read_manifest, saved_params

__all__ = ["main"]

_NONE_WORDS = ("none", "null")
_BOOL_WORDS = {"true": True, "false": False}
_SEQUENCE_ORIGINS = (collections.abc.Sequence, list, tuple)
# Where the command line's default differs from the estimator's: fits there are long,
# so show progress bars (on stderr).
_CLI_DEFAULTS = {"verbose": 1}


class CLIError(Exception):
    """A user error: reported as one line on stderr with exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    code : int
        0 on success, 2 on a user error (message on stderr).
    """
    parser = _build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras and args.command != "fit":
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exit_:
        # argparse exits for --help (0) and usage errors (2); return the code instead.
        return exit_.code if isinstance(exit_.code, int) else 2
    if extras:
        unknown = " ".join(e for e in extras if e.startswith("-")) or " ".join(extras)
        valid = " ".join(f"--{name}" for name in _cli_params())
        print(
            f"llmregressor fit: error: unknown parameter(s) {unknown}. LLMRegressor "
            f"parameters are: {valid}",
            file=sys.stderr,
        )
        return 2
    try:
        args.run(args)
    except (
        CLIError,
        ValueError,
        OSError,
        ImportError,
        CheckpointInUseError,
        TrainingDivergedError,
    ) as err:
        print(f"llmregressor: error: {err}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------- parser
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmregressor",
        description="Fit a language-model regressor on CSV data and predict with it.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"llmregressor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="fit a model on a CSV file and save it to a folder",
        description="Fit LLMRegressor on a CSV file (all columns but the target are "
        "features) and save it with LLMRegressor.save.",
        usage="llmregressor fit DATA --target COLUMN --out MODEL_DIR [--PARAMETER VALUE ...]",
        allow_abbrev=False,
    )
    fit.add_argument("data", type=Path, help="CSV file with a header row")
    fit.add_argument("--target", required=True, help="name of the target column")
    fit.add_argument("--out", required=True, type=Path, help="model folder to write")
    group = fit.add_argument_group(
        "LLMRegressor parameters",
        "Any constructor parameter; 'none', 'true'/'false' and comma-separated lists are parsed.",
    )
    for name, (kinds, default) in _cli_params().items():
        default = _CLI_DEFAULTS.get(name, default)
        group.add_argument(
            f"--{name}",
            type=_converter(name, kinds),
            default=argparse.SUPPRESS,
            metavar="|".join(_kind_label(k) for k in kinds),
            help=f"{PARAMETERS_BY_NAME[name].summary} (default: {default!r})".replace("%", "%%"),
        )
    fit.set_defaults(run=_fit)

    predict = commands.add_parser(
        "predict",
        help="predict the rows of a CSV file with a saved model",
        description="Predict with a model folder written by 'llmregressor fit' or "
        "LLMRegressor.save; writes a CSV with a 'prediction' column, row by row.",
        allow_abbrev=False,
    )
    predict.add_argument("model_dir", type=Path, help="model folder")
    predict.add_argument("data", type=Path, help="CSV file with the feature columns")
    predict.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    predict.add_argument(
        "--interval",
        type=_coverage,
        metavar="COVERAGE",
        help="also write 'lower' and 'upper' columns of a central predictive interval, "
        "calibrated to hold that share of targets (LLMRegressor.predict_interval)",
    )
    predict.add_argument(
        "--raw-interval",
        action="store_true",
        help="with --interval, write the raw quantiles of the predictive distribution "
        "instead (calibrated=False)",
    )
    predict.set_defaults(run=_predict)

    info = commands.add_parser(
        "info",
        help="describe a saved model without loading it",
        description="Print a model folder's versions, base model, training summary and parameters.",
        allow_abbrev=False,
    )
    info.add_argument("model_dir", type=Path, help="model folder")
    info.set_defaults(run=_info)
    return parser


def _cli_params() -> dict[str, tuple[tuple, object]]:
    """Map each parameter settable from text to (accepted kinds, default).

    Kinds are ``None``, ``bool``, ``int``, ``float``, ``str`` or ``(sequence type, item
    kind)``; alternatives text cannot express (a callable, a RandomState) are left out.
    """
    hints = typing.get_type_hints(LLMRegressor.__init__)
    params = {}
    # Signature order groups related parameters, as the class docstring does.
    for name, parameter in inspect.signature(LLMRegressor).parameters.items():
        kinds = tuple(k for k in map(_kind, _alternatives(hints[name])) if k is not None)
        # A parameter whose only value text can give is None (callbacks) is no option.
        if kinds and kinds != (type(None),):
            params[name] = (kinds, parameter.default)
    return params


def _alternatives(hint: object) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _kind(hint: object) -> object:
    if hint in (type(None), bool, int, float, str):
        return hint
    origin = typing.get_origin(hint)
    if origin in _SEQUENCE_ORIGINS:
        item = typing.get_args(hint)[:1]
        if item and item[0] in (bool, int, float, str):
            return (tuple if origin is tuple else list, item[0])
    return None


def _kind_label(kind: object) -> str:
    if isinstance(kind, tuple):
        return f"{kind[1].__name__.upper()},..."
    return "NONE" if kind is type(None) else kind.__name__.upper()


def _converter(name: str, kinds: tuple) -> Callable[[str], object]:
    """Parse a command-line string into the first kind of ``kinds`` that accepts it."""
    # The most specific reading wins: "none" is None and "true" a bool where accepted,
    # a comma makes a list, and str takes whatever is left.
    sequences = [k for k in kinds if isinstance(k, tuple)]
    scalars = [k for k in (bool, int, float) if k in kinds]

    def convert(text: str) -> object:
        if type(None) in kinds and text.strip().lower() in _NONE_WORDS:
            return None
        for kind in scalars:
            try:
                return _scalar(kind, text)
            except ValueError:
                pass
        # Without str among the alternatives, one item without a comma is a list of one.
        if sequences and ("," in text or str not in kinds):
            container, item = sequences[0]
            try:
                return container(_scalar(item, part.strip()) for part in text.split(","))
            except ValueError:
                pass
        if str in kinds:
            return text
        expected = " or ".join(_kind_label(k) for k in kinds)
        raise argparse.ArgumentTypeError(f"takes {expected}, got {text!r}")

    return convert


def _scalar(kind: type, text: str) -> object:
    if kind is bool:
        if text.strip().lower() not in _BOOL_WORDS:
            raise ValueError(f"not a bool: {text!r}")
        return _BOOL_WORDS[text.strip().lower()]
    return kind(text)


def _coverage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = np.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"coverage must be a number in (0, 1], got {text!r}")
    return value


# -------------------------------------------------------------------------- commands
def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read {path} as CSV: {err}") from err
    if frame.empty:
        raise CLIError(f"{path} holds no data rows")
    return frame


def _check_output_folder(path: Path, option: str) -> None:
    """Refuse a folder the command could not create or write, before any work is done."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path} exists and is not a folder")
    # The folder, or else its nearest existing parent, in which the missing ones are made.
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path} cannot be created: {existing} is not a writable folder")


def _check_output_file(path: Path, option: str, data: Path) -> None:
    """Refuse a file the command could not write, or the input data, before any work."""
    if path.is_dir():
        raise CLIError(f"{option} {path} is a folder, not a file")
    if path.exists() and path.resolve() == data.resolve():
        raise CLIError(f"{option} {path} is the input data file: it would be overwritten")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise CLIError(f"{option} {path} cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CLIError(f"{option} {path} cannot be written")


def _fit(args: argparse.Namespace) -> None:
    params = {**_CLI_DEFAULTS}
    params.update({name: getattr(args, name) for name in _cli_params() if hasattr(args, name)})
    _check_output_folder(args.out, "--out")
    if params.get("checkpoint_dir") is not None:
        _check_output_folder(Path(params["checkpoint_dir"]), "--checkpoint_dir")
    frame = _read_csv(args.data)
    if args.target not in frame.columns:
        raise CLIError(
            f"{args.data} has no column {args.target!r}; its columns are: "
            f"{', '.join(map(str, frame.columns))}"
        )
    y = frame[args.target]
    X = frame.drop(columns=[args.target])
    if X.shape[1] == 0:
        raise CLIError(f"{args.data} has no feature column besides the target")
    if not pd.api.types.is_numeric_dtype(y):
        raise CLIError(f"the target column {args.target!r} is not numeric (dtype {y.dtype})")
    if y.isna().any():
        raise CLIError(
            f"the target column {args.target!r} has {int(y.isna().sum())} missing values; "
            "drop those rows first"
        )
    regressor = LLMRegressor(**params)
    kind = backbone_for(regressor.model)
    if not kind.savable:
        # Refused before a fit of many minutes whose save() would then fail.
        raise CLIError(
            f"model={regressor.model!r} ({kind.kind} backbone) cannot be saved to a model "
            "folder yet: use the Python API and joblib for it"
        )
    try:
        validate_params(regressor.get_params(deep=False))
    except TypeError as err:  # a value of the wrong kind is a user error here
        raise CLIError(str(err)) from err
    _progress(f"read {args.data}: {len(X)} rows, {X.shape[1]} feature columns")
    _progress(f"fitting LLMRegressor(model={regressor.model!r}) ...")
    regressor.fit(X, y.to_numpy(dtype=np.float64))
    _progress(f"fitted in {regressor.fit_time_:.1f} s")
    regressor.save(args.out)
    _progress(f"saved the model to {args.out}")


def _predict(args: argparse.Namespace) -> None:
    if args.raw_interval and args.interval is None:
        raise CLIError("--raw-interval needs --interval COVERAGE")
    if args.out is not None:
        _check_output_file(args.out, "--out", args.data)
    _progress(f"loading the model in {args.model_dir} ...")
    regressor = LLMRegressor.load(args.model_dir)
    frame = _read_csv(args.data)
    names = getattr(regressor, "feature_names_in_", None)
    if names is not None:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise CLIError(f"{args.data} lacks the feature columns {missing} the model needs")
        # Extra columns (such as the target) are ignored.
        X = frame[list(names)]
    else:
        X = frame.to_numpy()
    _progress(f"predicting {len(X)} rows ...")
    out = pd.DataFrame({"prediction": regressor.predict(X)})
    if args.interval is not None:
        out[["lower", "upper"]] = regressor.predict_interval(
            X, coverage=args.interval, calibrated=not args.raw_interval
        )
    if args.out is None:
        out.to_csv(sys.stdout, index=False)
    else:
        out.to_csv(args.out, index=False)
        _progress(f"wrote {args.out}")


def _info(args: argparse.Namespace) -> None:
    manifest = read_manifest(args.model_dir)
    try:
        print(_describe(manifest, args.model_dir))
    except (KeyError, TypeError) as err:
        raise CLIError(f"{args.model_dir} holds a damaged manifest: {err!r}") from err


def _describe(manifest: dict, model_dir: Path) -> str:
    fitted = manifest["fitted"]
    base = manifest["base_model"]
    history = fitted.get("history_", [])
    epochs = {
        phase: sum(
            r.get("phase") == phase and isinstance(r.get("epoch"), int) and r["epoch"] >= 0
            for r in history
        )
        for phase in ("sft", "rl")
    }
    names = fitted.get("feature_names_in_")
    lines = [
        f"model folder:    {model_dir}",
        f"saved by:        llmregressor {manifest['package_version']} "
        f"(format version {manifest['format_version']}; this llmregressor {__version__} "
        f"reads up to {FORMAT_VERSION})",
        f"base model:      {base['model']} (fingerprint {base['fingerprint']})",
        f"training rows:   {fitted.get('n_samples_fit_', 'unknown')}",
        f"calibration:     {_describe_calibration(fitted, saved_params(manifest))}",
        f"features:        {fitted['n_features_in_']}"
        + (f" ({', '.join(names)})" if names else ""),
        f"fit time:        {fitted['fit_time_']:.1f} s "
        f"({epochs['sft']} SFT epochs, {epochs['rl']} RL epochs)",
        "parameters:",
        *(f"  {name} = {value!r}" for name, value in saved_params(manifest).items()),
    ]
    return "\n".join(lines)


def _describe_calibration(fitted: dict, params: dict) -> str:
    if "calibration_" not in fitted:
        return "none (saved before calibrated intervals)"
    calibration = fitted["calibration_"]
    if calibration is None:
        return "none (raw intervals)"
    n_rows = len(calibration["targets"])
    # At a residual scale of 0 the training rows' out-of-fold residuals calibrate; under
    # interval_calibration="every_row" they do at any scale, with the held-out rows'
    # predictions (a "mean" center), and under "every_row_cqr" with every row's draws.
    if fitted.get("residual_scale_") == 0:
        rows = "out-of-fold rows"
    elif calibration.get("center") == "mean":
        rows = "training rows (held-out and out-of-fold)"
    elif params.get("interval_calibration") == "every_row_cqr" and fitted.get("residual_anchor_"):
        rows = "training rows (held-out and decoded in-sample)"
    else:
        rows = "held-out rows"
    return f"{n_rows} {rows}, n_samples={calibration['n_samples']!r}"
