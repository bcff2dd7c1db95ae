"""Speech Commands V2 TFDS builder (registers the dataset name "speech_commands_v2" on import)."""

from tfds_builders.speech_commands.speech_commands import CLASS_NAMES, SAMPLE_RATE, SpeechCommandsV2

__all__ = ["CLASS_NAMES", "SAMPLE_RATE", "SpeechCommandsV2"]
