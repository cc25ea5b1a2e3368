"""Fine-tune the quick recipe from another run's weights — the recipe log's curriculum test (issue 12).

Trains the quick profile's detector on its phantom's training split (validated on the validation split each
epoch; never the test split) starting from the weights of the run START (e.g. the quick recipe trained on
phantom v1, whose conspicuous lesions it learns) instead of random initialisation. The input normalisation
is START's, so the weights see the scaling they were trained with. The architecture settings must match
START's (the weights are loaded strictly).

    python experiments/finetune_from_run.py START RUN [--which best|last] [--set KEY=VALUE ...]
"""

import argparse

from bonetumor import config, pipeline
from bonetumor.engine import train, trainer
from bonetumor.modeling.checkpoints import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", help="the run whose weights the detector starts from")
    parser.add_argument("run")
    parser.add_argument("--which", default="best", help="START's best or last weights")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    settings = config.load("quick", config.parse_overrides(args.set))
    start, info = load_model(args.start, which=args.which)
    build = trainer.build_model

    def from_start(*build_args, **build_kwargs):
        model = build(*build_args, **build_kwargs)
        model.load_state_dict(start.state_dict())
        return model

    trainer.build_model = from_start
    train_set, val_set, _, _ = pipeline.training_data(settings, progress=False)
    mean, std = info["normalisation"]["mean"], info["normalisation"]["std"]
    print(f"from {info['weights']} ({info['settings_object'].tag()}); training {settings.tag()}")
    summary = train(settings, train_set, val_set, args.run, mean, std, progress=False,
                    val_metrics_fn=pipeline.validation_metrics(settings))
    print(summary)


if __name__ == "__main__":
    main()
