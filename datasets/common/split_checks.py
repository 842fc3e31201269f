"""Per-split bookkeeping: examples skipped for having no valid normal, and empty splits."""

from __future__ import annotations

from absl import logging

# How many skipped files a log line or an error names; the count is always complete.
MAX_NAMED = 5


class InvalidNormalsTally:
    """Counts the examples of one split whose normal map has no valid pixel.

    Such an example carries no normal supervision, so builders skip it (``keep`` returns
    False) rather than fail the whole build for one bad file. ``finish`` runs at the end of
    the split: it logs how many were skipped, naming the first few files, and raises when
    *every* example was skipped, because then the split has no valid normal pixel at all and
    the cause is systematic (wrong encoding, wrong camera, wrong directory), not one file.
    """

    def __init__(self, dataset: str, split: str, directory, what: str, hint: str = ""):
        """``what`` describes an invalid map (for messages); ``hint`` says what to check."""
        self.dataset, self.split, self.directory = dataset, split, directory
        self.what, self.hint = what, hint
        # Keyed by file so that a builder may look at one example twice (a selection pass
        # and the writing pass) without counting it twice.
        self._seen: set[str] = set()
        self._skipped: dict[str, None] = {}  # insertion-ordered set

    def keep(self, path, num_valid: int) -> bool:
        """Records one example; False (skip it) when ``num_valid`` is 0."""
        name = str(path)
        self._seen.add(name)
        if num_valid > 0:
            return True
        self._skipped[name] = None
        return False

    @property
    def num_seen(self) -> int:
        return len(self._seen)

    @property
    def num_skipped(self) -> int:
        return len(self._skipped)

    def _named(self) -> str:
        names = list(self._skipped)
        more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        return ", ".join(names[:MAX_NAMED]) + more

    def finish(self) -> int:
        """Logs the skipped examples; raises if none was kept. Returns the number skipped."""
        if self._seen and self.num_skipped == self.num_seen:
            raise ValueError(
                f"{self.dataset}: split '{self.split}' has no valid normal pixel at all: the "
                f"normal maps of all {self.num_seen} of its examples under {self.directory} "
                f"are {self.what} ({self._named()}). {self.hint}".rstrip())
        if self._skipped:
            logging.warning(
                "%s: split '%s': skipped %d of %d examples whose normal map is %s: %s",
                self.dataset, self.split, self.num_skipped, self.num_seen, self.what,
                self._named())
        return self.num_skipped


def drop_empty_splits(dataset: str, by_split: dict, why_empty: dict, if_all_empty: str) -> dict:
    """``by_split`` without the splits that have no item, each left out with a warning.

    TFDS refuses to write a split that yields no example ("No examples were yielded"), and
    a missing split is reported clearly by TFDS and by ``tada_keras.run`` ("has no such
    split; it has [...]"), so a small copy of a dataset still builds its other splits.

    Args:
        why_empty: split name -> explanation logged when that split is left out.
        if_all_empty: the error message when no split has an item.
    """
    kept = {name: items for name, items in by_split.items() if items}
    if not kept:
        raise ValueError(f"{dataset}: {if_all_empty}")
    for name in by_split:
        if name not in kept:
            logging.warning("%s: split '%s' left out: %s", dataset, name, why_empty[name])
    return kept
