"""``python -m qd_bluesky.queueserver``: regenerate the shipped plan and device list."""

from . import write_existing_plans_and_devices

if __name__ == "__main__":
    print(write_existing_plans_and_devices())
