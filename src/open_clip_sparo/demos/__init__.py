"""The demos: scripted sessions of the ``sparo`` command line on the synthetic world.

``sparo demo`` (:mod:`.clip`) trains a plain CLIP and its SPARO twin and evaluates both;
``sparo demo-dino`` (:mod:`.dino`) does the same for DINO. Both run on :mod:`.runner`.
"""
