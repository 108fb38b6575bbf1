# Library notices quieted as the training code quiets them (train/__init__.py): the demo saves models too.
import train  # noqa: F401
