"""Experiment harness: every table of the paper (and the ablations) as one command.

    python -m tada_keras.experiments --table=2 --data=embedded --seeds=3 --out=runs/exp

``tables`` defines the rows as data, ``plan`` turns a table into validated runs,
``runner`` trains them (one ``tada_keras.train`` subprocess each, resumable), ``aggregate``
and ``report`` make the Markdown/CSV tables with significance tests, and ``figures``
draws the paper's figures. See docs/experiments.md.
"""
