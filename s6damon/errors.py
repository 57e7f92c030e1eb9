"""The one base class of errors caused by what a user gave the pipeline.

A params value, an audio file, a transcript, a dictionary word, a checkpoint folder: each
error names the key or file at fault. Command-line entry points print the message and exit
with status 2 instead of a traceback.
"""


class InputError(Exception):
    """Bad input from the user; the message names the key or file."""
