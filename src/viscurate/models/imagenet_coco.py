"""Which COCO classes an ImageNet-1k tag is evidence for.

The default classifier (EfficientNet-Lite3) names the 1,000 ImageNet classes; the default detector names
the 80 COCO classes. Label quality estimation (:mod:`viscurate.models.quality`) asks whether the tags of
an image (or of a box crop) agree with a detection's class, so it needs this map. It is hand-made from
the ImageNet class list shipped with the model (``efficientnet_labels.txt``, index = line number):

- a class maps to the COCO class it *is* (``tabby`` -> ``cat``, ``airliner`` -> ``airplane``);
- some map to several (``Windsor tie`` -> ``tie`` and ``person``; ``pickup`` -> ``truck`` and ``car``);
- clothing and person-only scenes are evidence for ``person`` (ImageNet has no person class);
- most classes (tools, landscapes, fish, insects...) map to nothing.

COCO classes with no ImageNet counterpart (giraffe, fire hydrant, frisbee, snowboard, kite,
baseball bat/glove, skateboard, surfboard, suitcase, fork, scissors, toothbrush, carrot, donut, cake)
never get a tag agreement signal (``None``), rather than a misleading zero.

>>> coco_classes_for_tag("tabby")
('cat',)
>>> coco_classes_for_tag("tabby, tabby cat")
('cat',)
>>> coco_classes_for_tag("Windsor tie")
('tie', 'person')
>>> coco_classes_for_tag("crane", class_id=134), coco_classes_for_tag("crane")  # bird vs. ambiguous
(('bird',), ())
>>> has_imagenet_evidence("giraffe"), has_imagenet_evidence("cat")
(False, True)
"""
from __future__ import annotations

from functools import lru_cache

from .coco import COCO_CLASSES

# the 80 COCO class names (re-exported for callers of this module)
__all__ = ["COCO_CLASSES", "IMAGENET_TO_COCO", "coco_classes_for_tag", "has_imagenet_evidence"]

# ImageNet index -> (first synonym of the ImageNet name, COCO classes it is evidence for)
IMAGENET_TO_COCO: dict[int, tuple[str, tuple[str, ...]]] = {
    # birds
    7: ("cock", ("bird",)), 8: ("hen", ("bird",)), 9: ("ostrich", ("bird",)), 10: ("brambling", ("bird",)),
    11: ("goldfinch", ("bird",)), 12: ("house finch", ("bird",)), 13: ("junco", ("bird",)),
    14: ("indigo bunting", ("bird",)), 15: ("robin", ("bird",)), 16: ("bulbul", ("bird",)), 17: ("jay", ("bird",)),
    18: ("magpie", ("bird",)), 19: ("chickadee", ("bird",)), 20: ("water ouzel", ("bird",)), 21: ("kite", ("bird",)),
    22: ("bald eagle", ("bird",)), 23: ("vulture", ("bird",)), 24: ("great grey owl", ("bird",)),
    80: ("black grouse", ("bird",)), 81: ("ptarmigan", ("bird",)), 82: ("ruffed grouse", ("bird",)),
    83: ("prairie chicken", ("bird",)), 84: ("peacock", ("bird",)), 85: ("quail", ("bird",)),
    86: ("partridge", ("bird",)), 87: ("African grey", ("bird",)), 88: ("macaw", ("bird",)),
    89: ("sulphur-crested cockatoo", ("bird",)), 90: ("lorikeet", ("bird",)), 91: ("coucal", ("bird",)),
    92: ("bee eater", ("bird",)), 93: ("hornbill", ("bird",)), 94: ("hummingbird", ("bird",)),
    95: ("jacamar", ("bird",)), 96: ("toucan", ("bird",)), 97: ("drake", ("bird",)),
    98: ("red-breasted merganser", ("bird",)), 99: ("goose", ("bird",)), 100: ("black swan", ("bird",)),
    127: ("white stork", ("bird",)), 128: ("black stork", ("bird",)), 129: ("spoonbill", ("bird",)),
    130: ("flamingo", ("bird",)), 131: ("little blue heron", ("bird",)), 132: ("American egret", ("bird",)),
    133: ("bittern", ("bird",)), 134: ("crane", ("bird",)), 135: ("limpkin", ("bird",)),
    136: ("European gallinule", ("bird",)), 137: ("American coot", ("bird",)), 138: ("bustard", ("bird",)),
    139: ("ruddy turnstone", ("bird",)), 140: ("red-backed sandpiper", ("bird",)), 141: ("redshank", ("bird",)),
    142: ("dowitcher", ("bird",)), 143: ("oystercatcher", ("bird",)), 144: ("pelican", ("bird",)),
    145: ("king penguin", ("bird",)), 146: ("albatross", ("bird",)),
    # cats (domestic only: cougar, lynx and the big cats are not COCO cats)
    281: ("tabby", ("cat",)), 282: ("tiger cat", ("cat",)), 283: ("Persian cat", ("cat",)),
    284: ("Siamese cat", ("cat",)), 285: ("Egyptian cat", ("cat",)),
    # bears
    294: ("brown bear", ("bear",)), 295: ("American black bear", ("bear",)), 296: ("ice bear", ("bear",)),
    297: ("sloth bear", ("bear",)), 388: ("giant panda", ("bear",)),
    # other animals
    101: ("tusker", ("elephant",)), 385: ("Indian elephant", ("elephant",)), 386: ("African elephant", ("elephant",)),
    339: ("sorrel", ("horse",)), 603: ("horse cart", ("horse",)), 340: ("zebra", ("zebra",)),
    # wild bovids and caprids (bison 347, bighorn 349, ibex 350) are not COCO's cows and sheep: a detector's
    # "cow" on a bison is the open-world mistake label quality must catch, not evidence for it
    345: ("ox", ("cow",)), 346: ("water buffalo", ("cow",)), 690: ("oxcart", ("cow",)),
    348: ("ram", ("sheep",)),
    # person: ImageNet has no person class; clothing and people-only classes are evidence for one
    399: ("abaya", ("person",)), 400: ("academic gown", ("person",)), 411: ("apron", ("person",)),
    433: ("bathing cap", ("person",)), 439: ("bearskin", ("person",)), 445: ("bikini", ("person",)),
    452: ("bonnet", ("person",)), 457: ("bow tie", ("tie", "person")), 459: ("brassiere", ("person",)),
    465: ("bulletproof vest", ("person",)), 474: ("cardigan", ("person",)), 501: ("cloak", ("person",)),
    515: ("cowboy hat", ("person",)), 518: ("crash helmet", ("person", "motorcycle")),
    560: ("football helmet", ("person",)), 568: ("fur coat", ("person",)), 570: ("gasmask", ("person",)),
    578: ("gown", ("person",)), 601: ("hoopskirt", ("person",)), 608: ("jean", ("person",)),
    610: ("jersey", ("person",)), 614: ("kimono", ("person",)), 617: ("lab coat", ("person",)),
    638: ("maillot", ("person",)), 639: ("maillot", ("person",)), 652: ("military uniform", ("person",)),
    655: ("miniskirt", ("person",)), 667: ("mortarboard", ("person",)), 679: ("necklace", ("person",)),
    689: ("overskirt", ("person",)), 697: ("pajama", ("person",)), 735: ("poncho", ("person",)),
    775: ("sarong", ("person",)), 796: ("ski mask", ("person",)), 808: ("sombrero", ("person",)),
    824: ("stole", ("person",)), 834: ("suit", ("person",)), 836: ("sunglass", ("person",)),
    837: ("sunglasses", ("person",)), 841: ("sweatshirt", ("person",)), 842: ("swimming trunks", ("person",)),
    869: ("trench coat", ("person",)), 887: ("vestment", ("person",)), 903: ("wig", ("person",)),
    906: ("Windsor tie", ("tie", "person")), 981: ("ballplayer", ("person", "sports ball")),
    982: ("groom", ("person",)), 983: ("scuba diver", ("person",)),
    # vehicles
    444: ("bicycle-built-for-two", ("bicycle",)), 671: ("mountain bike", ("bicycle",)),
    870: ("tricycle", ("bicycle",)), 880: ("unicycle", ("bicycle",)),
    407: ("ambulance", ("car", "truck")), 436: ("beach wagon", ("car",)), 468: ("cab", ("car",)),
    475: ("car mirror", ("car",)), 479: ("car wheel", ("car",)), 511: ("convertible", ("car",)),
    535: ("disk brake", ("car", "motorcycle")), 573: ("go-kart", ("car",)), 581: ("grille", ("car", "truck")),
    609: ("jeep", ("car", "truck")), 627: ("limousine", ("car",)), 656: ("minivan", ("car",)),
    661: ("Model T", ("car",)), 751: ("racer", ("car",)), 785: ("seat belt", ("car",)),
    817: ("sports car", ("car",)), 654: ("minibus", ("bus", "car")),
    665: ("moped", ("motorcycle",)), 670: ("motor scooter", ("motorcycle",)),
    404: ("airliner", ("airplane",)), 895: ("warplane", ("airplane",)), 908: ("wing", ("airplane",)),
    812: ("space shuttle", ("airplane",)),
    779: ("school bus", ("bus",)), 874: ("trolleybus", ("bus",)), 829: ("streetcar", ("train", "bus")),
    466: ("bullet train", ("train",)), 547: ("electric locomotive", ("train",)), 565: ("freight car", ("train",)),
    705: ("passenger car", ("train",)), 820: ("steam locomotive", ("train",)),
    555: ("fire engine", ("truck",)), 569: ("garbage truck", ("truck",)), 675: ("moving van", ("truck",)),
    717: ("pickup", ("truck", "car")), 734: ("police van", ("car", "truck")), 864: ("tow truck", ("truck",)),
    867: ("trailer truck", ("truck",)),
    403: ("aircraft carrier", ("boat",)), 472: ("canoe", ("boat",)), 484: ("catamaran", ("boat",)),
    510: ("container ship", ("boat",)), 554: ("fireboat", ("boat",)), 576: ("gondola", ("boat",)),
    625: ("lifeboat", ("boat",)), 628: ("liner", ("boat",)), 693: ("paddle", ("boat",)),
    694: ("paddlewheel", ("boat",)), 724: ("pirate", ("boat",)), 780: ("schooner", ("boat",)),
    814: ("speedboat", ("boat",)), 833: ("submarine", ("boat",)), 871: ("trimaran", ("boat",)),
    914: ("yawl", ("boat",)),
    # street and outdoor things
    920: ("traffic light", ("traffic light",)), 919: ("street sign", ("stop sign",)),
    704: ("parking meter", ("parking meter",)), 703: ("park bench", ("bench",)),
    # accessories and sports
    414: ("backpack", ("backpack",)), 879: ("umbrella", ("umbrella",)), 748: ("purse", ("handbag",)),
    636: ("mailbag", ("handbag",)), 795: ("ski", ("skis",)), 752: ("racket", ("tennis racket",)),
    429: ("baseball", ("sports ball",)), 430: ("basketball", ("sports ball",)),
    522: ("croquet ball", ("sports ball",)), 574: ("golf ball", ("sports ball",)),
    722: ("ping-pong ball", ("sports ball",)), 768: ("rugby ball", ("sports ball",)),
    805: ("soccer ball", ("sports ball",)), 852: ("tennis ball", ("sports ball",)),
    890: ("volleyball", ("sports ball",)),
    # kitchen and food
    440: ("beer bottle", ("bottle",)), 720: ("pill bottle", ("bottle",)), 737: ("pop bottle", ("bottle",)),
    898: ("water bottle", ("bottle",)), 907: ("wine bottle", ("bottle",)),
    572: ("goblet", ("wine glass",)), 966: ("red wine", ("wine glass",)), 441: ("beer glass", ("cup", "wine glass")),
    504: ("coffee mug", ("cup",)), 968: ("cup", ("cup",)), 967: ("espresso", ("cup",)), 969: ("eggnog", ("cup",)),
    647: ("measuring cup", ("cup",)),
    499: ("cleaver", ("knife",)), 623: ("letter opener", ("knife",)),
    910: ("wooden spoon", ("spoon",)), 618: ("ladle", ("spoon",)),
    659: ("mixing bowl", ("bowl",)), 809: ("soup bowl", ("bowl",)), 925: ("consomme", ("bowl",)),
    954: ("banana", ("banana",)), 948: ("Granny Smith", ("apple",)), 950: ("orange", ("orange",)),
    951: ("lemon", ("orange",)), 937: ("broccoli", ("broccoli",)), 934: ("hotdog", ("hot dog",)),
    933: ("cheeseburger", ("sandwich",)), 963: ("pizza", ("pizza",)),
    # furniture and household
    423: ("barber chair", ("chair",)), 559: ("folding chair", ("chair",)), 765: ("rocking chair", ("chair",)),
    857: ("throne", ("chair",)), 831: ("studio couch", ("couch",)), 738: ("pot", ("potted plant",)),
    564: ("four-poster", ("bed",)), 520: ("crib", ("bed",)), 750: ("quilt", ("bed",)),
    532: ("dining table", ("dining table",)), 861: ("toilet seat", ("toilet",)),
    851: ("television", ("tv",)), 664: ("monitor", ("tv",)), 782: ("screen", ("tv",)),
    598: ("home theater", ("tv",)), 548: ("entertainment center", ("tv",)),
    620: ("laptop", ("laptop",)), 681: ("notebook", ("laptop",)), 673: ("mouse", ("mouse",)),
    761: ("remote control", ("remote",)), 508: ("computer keyboard", ("keyboard",)),
    810: ("space bar", ("keyboard",)), 878: ("typewriter keyboard", ("keyboard",)),
    487: ("cellular telephone", ("cell phone",)), 590: ("hand-held computer", ("cell phone",)),
    651: ("microwave", ("microwave",)), 827: ("stove", ("oven",)), 766: ("rotisserie", ("oven",)),
    859: ("toaster", ("toaster",)), 896: ("washbasin", ("sink",)), 760: ("refrigerator", ("refrigerator",)),
    921: ("book jacket", ("book",)), 917: ("comic book", ("book",)), 453: ("bookcase", ("book",)),
    454: ("bookshop", ("book",)), 624: ("library", ("book",)),
    409: ("analog clock", ("clock",)), 530: ("digital clock", ("clock",)), 892: ("wall clock", ("clock",)),
    883: ("vase", ("vase",)), 850: ("teddy", ("teddy bear",)), 589: ("hand blower", ("hair drier",)),
}
# dogs: ImageNet 151..268 are all dog breeds
_DOG_BREEDS = (
    "Chihuahua", "Japanese spaniel", "Maltese dog", "Pekinese", "Shih-Tzu", "Blenheim spaniel", "papillon",
    "toy terrier", "Rhodesian ridgeback", "Afghan hound", "basset", "beagle", "bloodhound", "bluetick",
    "black-and-tan coonhound", "Walker hound", "English foxhound", "redbone", "borzoi", "Irish wolfhound",
    "Italian greyhound", "whippet", "Ibizan hound", "Norwegian elkhound", "otterhound", "Saluki",
    "Scottish deerhound", "Weimaraner", "Staffordshire bullterrier", "American Staffordshire terrier",
    "Bedlington terrier", "Border terrier", "Kerry blue terrier", "Irish terrier", "Norfolk terrier",
    "Norwich terrier", "Yorkshire terrier", "wire-haired fox terrier", "Lakeland terrier", "Sealyham terrier",
    "Airedale", "cairn", "Australian terrier", "Dandie Dinmont", "Boston bull", "miniature schnauzer",
    "giant schnauzer", "standard schnauzer", "Scotch terrier", "Tibetan terrier", "silky terrier",
    "soft-coated wheaten terrier", "West Highland white terrier", "Lhasa", "flat-coated retriever",
    "curly-coated retriever", "golden retriever", "Labrador retriever", "Chesapeake Bay retriever",
    "German short-haired pointer", "vizsla", "English setter", "Irish setter", "Gordon setter",
    "Brittany spaniel", "clumber", "English springer", "Welsh springer spaniel", "cocker spaniel",
    "Sussex spaniel", "Irish water spaniel", "kuvasz", "schipperke", "groenendael", "malinois", "briard",
    "kelpie", "komondor", "Old English sheepdog", "Shetland sheepdog", "collie", "Border collie",
    "Bouvier des Flandres", "Rottweiler", "German shepherd", "Doberman", "miniature pinscher",
    "Greater Swiss Mountain dog", "Bernese mountain dog", "Appenzeller", "EntleBucher", "boxer", "bull mastiff",
    "Tibetan mastiff", "French bulldog", "Great Dane", "Saint Bernard", "Eskimo dog", "malamute",
    "Siberian husky", "dalmatian", "affenpinscher", "basenji", "pug", "Leonberg", "Newfoundland",
    "Great Pyrenees", "Samoyed", "Pomeranian", "chow", "keeshond", "Brabancon griffon", "Pembroke", "Cardigan",
    "toy poodle", "miniature poodle", "standard poodle", "Mexican hairless",
)
assert len(_DOG_BREEDS) == 268 - 151 + 1
IMAGENET_TO_COCO.update({151 + i: (name, ("dog",)) for i, name in enumerate(_DOG_BREEDS)})


# first synonyms shared by two ImageNet classes of different meaning (134 crane the bird, 517 crane the
# machine): without the class id they say nothing
_AMBIGUOUS_NAMES = frozenset({"crane"})


def _norm(name: str) -> str:
    """ImageNet names come as 'tabby, tabby cat' or 'tabby'; compare on the first synonym, lower case."""
    return name.split(",")[0].strip().lower()


@lru_cache(maxsize=1)
def _by_name() -> dict[str, tuple[str, ...]]:
    seen: dict[str, set[int]] = {}
    for idx, (name, _) in IMAGENET_TO_COCO.items():
        seen.setdefault(_norm(name), set()).add(idx)
    out = {name: IMAGENET_TO_COCO[min(idxs)][1] for name, idxs in seen.items()}
    for name in _AMBIGUOUS_NAMES:
        out.pop(name, None)
    return out


def coco_classes_for_tag(name: str, class_id: int | None = None) -> tuple[str, ...]:
    """COCO classes that an ImageNet tag is evidence for (empty when none). The name decides; the class
    id (0..999) only settles a name that two ImageNet classes share, and only when it agrees with it."""
    n = _norm(name or "")
    if n and n not in _AMBIGUOUS_NAMES:
        return _by_name().get(n, ())
    if class_id is not None:
        hit = IMAGENET_TO_COCO.get(int(class_id))
        if hit and (not n or _norm(hit[0]) == n):
            return hit[1]
    return ()


@lru_cache(maxsize=1)
def _covered() -> frozenset[str]:
    return frozenset(c for _, cocos in IMAGENET_TO_COCO.values() for c in cocos)


def has_imagenet_evidence(coco_name: str) -> bool:
    """Whether any ImageNet tag can speak for this COCO class (otherwise tag agreement is unknown)."""
    return coco_name in _covered()
