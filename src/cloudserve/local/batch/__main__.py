"""``python -m cloudserve.local.batch --config JSON --job ID``: the batch runner process."""

from cloudserve.local.batch.runner import main

if __name__ == "__main__":
    main()
