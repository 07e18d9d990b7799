"""Pipeline classes kept outside lpnode's source tree, as a user's own package would be. Tests put the
``tests`` directory on ``PYTHONPATH`` so runner processes can import ``custom_pipelines.<module>``."""
