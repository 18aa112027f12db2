"""An example router that lives outside the pipeline's package (README "Bring your own router")."""
from custom_router.cosine import CosineRouter

__all__ = ["CosineRouter"]
