"""The version of vitjob: the image tag (``vitjob.images``) and ``vitjob --version`` read it here."""

__version__ = "0.1.0"
