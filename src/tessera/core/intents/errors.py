from __future__ import annotations

from tessera.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge


class IntentSetNotFound(NotFound):
    """The intent set does not exist or belongs to another organization."""

    code = "intent_set_not_found"


class IntentNotFound(NotFound):
    """The intent is not in this set."""

    code = "intent_not_found"


class IntentVersionNotFound(NotFound):
    """The set has no trained version with that number."""

    code = "intent_version_not_found"


class IntentSetNameTaken(Conflict):
    """Another intent set of this organization has that name."""

    code = "intent_set_name_taken"


class IntentNameTaken(Conflict):
    """The set already has an intent with that name."""

    code = "intent_name_taken"


class IntentSetNotTrained(Conflict):
    """The set has no trained version yet: train it (`POST .../train`) before classifying."""

    code = "intent_set_not_trained"


class IntentModelMismatch(Conflict):
    """The active version was trained on another embedding model than the one serving now: train again."""

    code = "intent_model_mismatch"


class IntentTrainingConflict(Conflict):
    """Another training of this set finished first; retry."""

    code = "intent_training_conflict"


class IntentSetNotTrainable(InvalidInput):
    """The set cannot be trained as it stands: it needs two intents at least, each with an example."""

    code = "intent_set_not_trainable"


class IntentSetTooLarge(PayloadTooLarge):
    """The set would hold more intents or examples than the server allows (`intents.max_intents`,
    `intents.max_examples`)."""

    code = "intent_set_too_large"


class NotIntentData(InvalidInput):
    """The file is neither a `text,category` CSV nor CLINC-style JSON."""

    code = "not_intent_data"
