"""The transcript recorder. Worker side (its own process, no ORM): ``agent`` joins a
call's room hidden, ``merge`` folds LiveKit's two transcript paths, ``writer`` posts
updates. Server side: ``dispatch`` sends recorders to rooms, ``intake`` takes updates.
Both sides: ``wire``, what they say to each other (shapes, limits, signing; no Django).
"""
