"""skypost: syndicate a site's posts to Bluesky, in the background, exactly once."""

from skypost.app import Skypost
from skypost.config import Settings, load_settings
from skypost.models import Account, Post, PostStatus, ValidationError

__all__ = ["Account", "Post", "PostStatus", "Settings", "Skypost", "ValidationError", "load_settings"]
__version__ = "0.1.0"
